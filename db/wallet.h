/* The wallet schema's face (schema `wallet`, migrations 0002/0003/0005): typed requests and
 * results for issuer-sim — the snapshot load, the group-committed apply of decisions and
 * reversals, the hold expiry sweep, the schema check — and the blocking bulk seeder of its
 * offline `seed` tool. All of the schema's SQL lives behind it (db/wallet.c, db/wallet_seed.c);
 * no libpq type crosses it. See docs/db.md, "The wallet API". */
#ifndef ATLAS_DB_WALLET_H
#define ATLAS_DB_WALLET_H

#include "db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The schema version the wallet statements need: wallet.sim_apply / sim_reverse of 0003 with
 * 0005's hot path and domains, 0008's KYC tiers and monthly and credit counters, 0012's
 * pre-authorization completion and incremental authorization, 0014's stand-in advices and
 * 0017's set-based batch (wallet.sim_apply_batch) and statement-level ledger triggers, 0019's
 * set-based reversals (wallet.sim_reverse_batch). */
#define DB_WALLET_SCHEMA_VERSION 20

/* Decisions and reversals applied by one transaction at most (one Sync per batch). */
#define DB_WALLET_APPLY_MAX 32

enum db_wallet_status { DB_WALLET_ACTIVE, DB_WALLET_BLOCKED, DB_WALLET_LOST };
enum db_wallet_pin_method {
    DB_WALLET_PIN_PVV,     /* Visa PVV: pvki, pvv */
    DB_WALLET_PIN_IBM3624, /* IBM 3624 offset: pin_offset */
};

/* A wallet row as the decision needs it. Numbers that the schema allows to be NULL (limits)
 * are -1 when NULL; optional text is "". */
struct db_wallet_row {
    int64_t wallet_id;
    /* The row version the snapshot was read at (opaque; PostgreSQL's xmin). An apply carries it
     * back and is answered DB_WALLET_RETRY when the row changed since. */
    char row_version[24];
    char expiry[5]; /* YYMM */
    int currency;   /* ISO 4217 numeric */
    int64_t balance_minor, held_minor;
    enum db_wallet_status status;
    enum db_wallet_pin_method pin_method;
    int pvki;            /* 0 when none */
    char pvv[5];         /* "" when none */
    char pin_offset[13]; /* "" when none */
    int pin_tries, pin_try_limit;
    int64_t daily_limit_minor, daily_cash_limit_minor, daily_count_limit; /* -1 = no limit */
    char usage_date[11]; /* YYYY-MM-DD the daily counters belong to, "" = never used */
    int64_t usage_minor, usage_cash_minor, usage_count, day_credit_minor;
    char usage_month[11]; /* YYYY-MM-01 the monthly counters belong to, "" = never used */
    int64_t month_debit_minor, month_credit_minor;
    int kyc_tier; /* and its limits for the wallet's currency (wallet.kyc_tiers), -1 = none */
    int64_t max_balance_minor, debit_daily_limit_minor, debit_monthly_limit_minor,
        credit_daily_limit_minor, credit_monthly_limit_minor;
};

/* An answer recorded in wallet.requests (or the one an apply just recorded). */
struct db_wallet_answer {
    char rc[3];        /* DE 39; "" for an apply answered DB_WALLET_RETRY */
    char auth_code[7]; /* DE 38, "" when none */
    bool has_balances; /* both balances known (for DE 54) */
    int64_t balance_minor, available_minor;
};

/* What db_wallet_load reads in one statement: the card's wallet and the request's recorded
 * answer, each when there is one. */
struct db_wallet_snapshot {
    bool has_wallet; /* a wallet has this PAN HMAC; wallet is filled */
    struct db_wallet_row wallet;
    bool answered; /* the request key was answered before (a repeat); answer is filled */
    struct db_wallet_answer answer;
};

/* ---- the asynchronous handle (a pool of pipelined connections on the caller's loop) ------- */

struct db_wallet;

struct db_wallet_opts {
    const char *conninfo; /* libpq conninfo; NULL or "" = the PG* environment */
    unsigned connections; /* default 1 */
    unsigned max_queued;  /* calls accepted and not yet called back; default 10000 */
};

/* Creates the handle on base: its connections, with the wallet statements prepared on each as
 * it connects, connect from the loop. Copies opts->conninfo. Returns 0 and *out, or
 * DB_E_INVALID / DB_E_SYS. */
__attribute__((warn_unused_result)) int
db_wallet_new(struct event_base *base, const struct db_wallet_opts *opts, struct db_wallet **out);

/* True when at least one connection is up. */
bool db_wallet_ready(const struct db_wallet *w);

/* Closes the connections. Calls not yet answered get their callback with DB_E_CLOSED before
 * this returns. Never call it from inside one of the handle's callbacks. */
void db_wallet_free(struct db_wallet *w);

/* Every callback below runs on the loop, once per accepted call — possibly before the call
 * returns (while no connection is up, work fails at once with DB_E_CONN). err->code is 0 on
 * success; otherwise DB_E_CONN (outcome unknown: the connection broke after sending),
 * DB_E_SQL (refused by the server; err->sqlstate, message), DB_E_CLOSED, or DB_E_INVALID (the
 * server answered rows this layer cannot read; err->message says which value). Transient
 * SQLSTATEs (serialization failure, deadlock) are retried inside, up to 3 times. The calls
 * return 0 when accepted, else DB_E_INVALID, DB_E_FULL (max_queued reached) or DB_E_SYS, and
 * then never call back. */

/* snap is NULL unless err->code == 0. */
typedef void (*db_wallet_load_cb)(void *arg, const struct db_error *err,
                                  const struct db_wallet_snapshot *snap);

/* Reads, in one statement outside any lock, the wallet whose pan_hmac is the 32 given bytes
 * (db_pan_hmac of the PAN) and the answer recorded under request_key. */
__attribute__((warn_unused_result)) int db_wallet_load(struct db_wallet *w,
                                                       const uint8_t pan_hmac[32],
                                                       const char *request_key,
                                                       db_wallet_load_cb cb, void *arg);

/* ---- several snapshots in one statement (issue 17) */

/* Requests whose snapshots one db_wallet_load_batch call reads at most. */
#define DB_WALLET_LOAD_MAX 64

struct db_wallet_load_req {
    uint8_t pan_hmac[32];    /* db_pan_hmac of the card's PAN */
    const char *request_key; /* read during the call only */
};

/* One request's snapshot: err.code is 0 and snap filled, or DB_E_INVALID (err.message says
 * which value of its row this layer could not read) — db_wallet_load_cb's err and snap. */
struct db_wallet_loaded {
    struct db_error err;
    struct db_wallet_snapshot snap;
};

/* out[i] is the snapshot of reqs[i]; out is NULL and n 0 unless err->code == 0 (then the
 * whole statement failed: every request gets err). */
typedef void (*db_wallet_load_batch_cb)(void *arg, const struct db_error *err,
                                        const struct db_wallet_loaded *out, unsigned n);

/* Reads the snapshots of n (1..DB_WALLET_LOAD_MAX) requests — what db_wallet_load reads for
 * each — with ONE statement (one round trip, one transaction): element i of two array
 * parameters is request i, one row per request in order. A PAN or key given twice is read
 * twice. */
__attribute__((warn_unused_result)) int db_wallet_load_batch(struct db_wallet *w,
                                                             const struct db_wallet_load_req *reqs,
                                                             unsigned n, db_wallet_load_batch_cb cb,
                                                             void *arg);

/* What the handle has sent since it was created (for logs, benchmarks and tests). */
struct db_wallet_stats {
    uint64_t loads;           /* snapshots asked for (db_wallet_load and _load_batch) */
    uint64_t load_statements; /* statements that read them */
};
void db_wallet_stats(const struct db_wallet *w, struct db_wallet_stats *out);

/* A decision to record (wallet.sim_apply): the answer and its effects. Strings are read during
 * the call only; NULL where marked optional. */
struct db_wallet_decision {
    const char *request_key;
    bool has_wallet; /* false: no wallet has the card (the decision is a decline) */
    int64_t wallet_id;
    const char *row_version; /* db_wallet_row.row_version of the snapshot decided on */
    const char *mti, *pcode;
    int64_t amount_minor;   /* DE 4, -1 = none */
    const char *rrn;        /* DE 37, optional */
    const char *rc;         /* DE 39 decided */
    const char *auth_code;  /* DE 38, optional */
    int pin_tries;          /* new PIN try counter, -1 = unchanged */
    int64_t hold_minor;     /* > 0: place a hold of this amount */
    int64_t ledger_minor;   /* != 0: ledger movement (credit > 0, debit < 0) of kind */
    const char *kind;       /* ledger kind ("purchase", ...), optional */
    const char *usage_date; /* YYYY-MM-DD: set every counter below; NULL = unchanged */
    int64_t usage_minor, usage_cash_minor, usage_count, day_credit_minor;
    const char *usage_month; /* YYYY-MM-01 of the monthly counters (with usage_date) */
    int64_t month_debit_minor, month_credit_minor;
    /* An incremental authorization (an 0100 whose DE 90 names a pre-auth): the pre-auth's
     * request key; its hold joins the pre-auth's (wallet.sim_apply_increment), or the approval
     * becomes 25/12 when that hold is not active. NULL for every other decision. */
    const char *parent_key;
    /* A stand-in advice from the switch (0120/0220 without DE 90): applied by wallet.sim_advice
     * as a forced post (migration 0014, docs/issuer-sim.md "Advices") — rc "00" applies it
     * whatever the funds, another rc records it refused; a reversal that came first makes it
     * acknowledged ("00") and not applied. */
    bool advice;
};

/* A pre-authorization completion (an 0220 whose DE 90 names the pre-auth, wallet.sim_complete):
 * captures the pre-auth's holds for amount_minor, up to the issuer's tolerance above them. The
 * decision is the function's (docs/issuer-sim.md, "Pre-authorization"); auth_code is the
 * approval code to record if it approves. */
struct db_wallet_completion {
    const char *request_key;
    const char *original_key; /* the pre-auth's request key */
    bool has_wallet;          /* false: no wallet has the card (answered 14) */
    int64_t wallet_id;
    const char *mti, *pcode;
    int64_t amount_minor; /* the final amount (DE 4, or DE 6 when converted) */
    int currency;         /* its currency (DE 49, or DE 51) */
    const char *rrn;      /* optional */
    const char *auth_code;
};

/* A reversal of the request original_key (wallet.sim_reverse), recorded under "rev:" + it. */
struct db_wallet_reversal {
    const char *original_key;
    const char *mti, *pcode; /* the reversal's */
    int64_t amount_minor;    /* -1 = none */
    const char *rrn;         /* optional */
};

enum db_wallet_op_kind { DB_WALLET_OP_DECISION, DB_WALLET_OP_REVERSAL, DB_WALLET_OP_COMPLETION };

struct db_wallet_op {
    enum db_wallet_op_kind kind;
    union {
        struct db_wallet_decision decision;
        struct db_wallet_reversal reversal;
        struct db_wallet_completion completion;
    } u;
};

enum db_wallet_verdict {
    DB_WALLET_APPLIED,   /* recorded, effects applied (a reversal: the original taken back) */
    DB_WALLET_DUPLICATE, /* answered before: answer is the recorded one, nothing applied */
    DB_WALLET_REVERSED,  /* its reversal came first: recorded as declined 12, no effect */
    DB_WALLET_RETRY,     /* the wallet changed since the snapshot: load and decide again */
    DB_WALLET_NOT_FOUND, /* a reversal of a request never seen: acknowledged, tombstone left */
    DB_WALLET_verdict_max
};

/* "applied", "duplicate", "reversed", "retry", "not_found" (the functions' own words). */
const char *db_wallet_verdict_name(enum db_wallet_verdict v);

/* The result of one op of a committed batch. status is 0, or DB_E_INVALID when its row could
 * not be read (then verdict and answer mean nothing). */
struct db_wallet_outcome {
    int status;
    enum db_wallet_verdict verdict;
    struct db_wallet_answer answer;
};

/* out[i] is the outcome of ops[i] (the caller's order); out is NULL and n 0 unless err->code
 * == 0. */
typedef void (*db_wallet_apply_cb)(void *arg, const struct db_error *err,
                                   const struct db_wallet_outcome *out, unsigned n);

/* Applies n (1..DB_WALLET_APPLY_MAX) ops in ONE transaction: one commit, one WAL flush for the
 * batch; cb fires after that commit. The ops run in wallet order (reversals, whose wallet is
 * not known here, last), so that concurrent batches lock wallet rows in one order and cannot
 * deadlock. All or nothing: if the server refuses any op (DB_E_SQL) the whole batch is rolled
 * back — apply its ops again one per batch to learn which. DB_E_CONN leaves the outcome
 * unknown; the functions are idempotent per request key, so the same ops may be sent again. */
__attribute__((warn_unused_result)) int db_wallet_apply(struct db_wallet *w,
                                                        const struct db_wallet_op *ops, unsigned n,
                                                        db_wallet_apply_cb cb, void *arg);

/* expired: holds released because they passed their expiry (wallet.sim_expire_holds). */
typedef void (*db_wallet_expire_cb)(void *arg, const struct db_error *err, int64_t expired);

/* Expires the active holds past their expiry, in a transaction of its own. */
__attribute__((warn_unused_result)) int db_wallet_expire_holds(struct db_wallet *w,
                                                               db_wallet_expire_cb cb, void *arg);

/* ---- blocking: start-up check and the offline seeder ------------------------------------ */

/* Connects to conninfo (NULL or "" = PG* environment) and checks that the database has at
 * least DB_WALLET_SCHEMA_VERSION. Returns 0, DB_E_CONN (cannot connect; err->message is
 * libpq's) or DB_E_SCHEMA (err->message says which versions). For start-up, before the loop. */
__attribute__((warn_unused_result)) int db_wallet_schema_check(const char *conninfo,
                                                               struct db_error *err);

/* What a wallet database holds, for issuer-sim's start-up line: its wallets counted per BIN
 * (the first six digits of the masked PAN) and currency, the largest groups first. */
#define DB_WALLET_CENSUS_MAX 8
struct db_wallet_census {
    int64_t wallets; /* all of them */
    size_t n;        /* groups in group[] */
    bool more;       /* there are groups beyond DB_WALLET_CENSUS_MAX */
    struct {
        char bin[7];
        int currency;
        int64_t wallets;
    } group[DB_WALLET_CENSUS_MAX];
};

/* Connects to conninfo (NULL or "" = PG* environment) and counts its wallets into out. One
 * scan of wallet.wallets: for start-up, before the loop. 0, DB_E_CONN or DB_E_SQL (err). */
__attribute__((warn_unused_result)) int
db_wallet_census(const char *conninfo, struct db_wallet_census *out, struct db_error *err);

/* One wallet to create with its opening balance. The PAN itself never comes here. */
struct db_wallet_seed_row {
    uint8_t pan_hmac[32]; /* db_pan_hmac of the PAN: the lookup key */
    char pan_masked[20];
    char expiry[5]; /* YYMM */
    int currency;
    int64_t balance_minor; /* opening balance (an 'opening' ledger entry), >= 0 */
    enum db_wallet_status status;
    enum db_wallet_pin_method pin_method;
    int pvki;                  /* PVV */
    char pvv[5];               /* PVV */
    char pin_offset[13];       /* IBM 3624 */
    int64_t daily_limit_minor; /* -1 = none */
    int kyc_tier;              /* wallet.kyc_tiers tier for currency; 0 = the default (1) */
};

/* A blocking session that creates wallets in batches: COPY into a temporary table, then one
 * INSERT ... SELECT per batch (an existing pan_hmac is kept as it is). As a superuser it runs
 * in bulk mode (session_replication_role = replica: each wallet is written with its balance
 * and its opening entry with balance_after_minor in one statement, no trigger per row);
 * otherwise in trigger mode (the 0002 triggers apply each opening entry). */
struct db_wallet_seeder;

/* Connects, checks the schema (DB_WALLET_SCHEMA_VERSION), chooses the mode and creates the
 * staging table. Returns 0 and *out, or DB_E_CONN / DB_E_SCHEMA / DB_E_SQL / DB_E_SYS with
 * err filled. */
__attribute__((warn_unused_result)) int
db_wallet_seeder_open(const char *conninfo, struct db_wallet_seeder **out, struct db_error *err);

/* True in bulk mode. */
bool db_wallet_seeder_bulk(const struct db_wallet_seeder *s);

/* Starts a batch (a transaction; its rows are streamed with COPY as they are added). */
__attribute__((warn_unused_result)) int db_wallet_seed_begin(struct db_wallet_seeder *s,
                                                             struct db_error *err);

/* Adds one wallet to the batch. DB_E_INVALID for a row that cannot be written (a field too
 * long or holding a tab, newline or backslash); DB_E_CONN / DB_E_SQL from the server. */
__attribute__((warn_unused_result)) int db_wallet_seed_add(struct db_wallet_seeder *s,
                                                           const struct db_wallet_seed_row *row,
                                                           struct db_error *err);

/* Writes the batch's wallets (and their opening entries) and commits. *inserted (may be NULL)
 * receives how many wallets were new. */
__attribute__((warn_unused_result)) int
db_wallet_seed_commit(struct db_wallet_seeder *s, uint64_t *inserted, struct db_error *err);

/* Rolls back a batch not committed and closes the session. NULL is fine. */
void db_wallet_seeder_close(struct db_wallet_seeder *s);

#endif
