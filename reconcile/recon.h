/* atlas-reconcile's model and rules. The loader (fetch.c) fills an rc_ctx with what the
 * switch's tables say (journal rows, reversals, in-flight rows), with every issuer request key
 * (wallet.requests, ledger, holds) and with the wallets they touch; rc_run() then applies the
 * checks of docs/reconcile.md and keeps every mismatch and total. Pure: no I/O, so the rules
 * can be unit-tested on hand-made data. Amounts are signed minor units, as their effect on the
 * wallet's available balance: a debit or a hold is negative, a credit positive. */
#ifndef ATLAS_RECON_H
#define ATLAS_RECON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

struct rc_map;

/* Where a switch-side item comes from. */
enum rc_src {
    RC_SRC_JOURNAL,  /* switch.authorizations (with its reversal_queue row joined, if any) */
    RC_SRC_REVERSAL, /* a switch.reversal_queue row whose request has no journal row */
    RC_SRC_INFLIGHT, /* a switch.inflight row: forwarded, never settled */
    RC_SRC_ADVICE,   /* a switch.advice_queue advice (with its reversal row joined, if any)
                        whose stand-in request has no journal row (migration 0014) */
};

/* The state of a request's reversal (switch.reversal_queue.state), RC_REV_NONE without one. */
enum rc_rev { RC_REV_NONE, RC_REV_PENDING, RC_REV_ACKED, RC_REV_FAILED };
const char *rc_rev_name(enum rc_rev r);

/* One request as the switch knows it. Strings are NUL-terminated, "" when NULL in the table. */
struct rc_sw {
    enum rc_src src;
    bool in_window; /* created_at in [from, to): checked. Else context: it only names issuer keys */
    char request_date[11], acquirer[12], terminal[9], stan[7], de7[11], mti[5], cls[4];
    char issuer_id[33], issuer_stan[7], issuer_de7[11], proc[7];
    int64_t amount;                    /* what the issuer moves: DE 6 when converted, else DE 4;
                                          -1 = none */
    int currency;                      /* its currency: DE 51 when converted, else DE 49 */
    bool converted;                    /* the request carried DE 6/10/51 (migration 0009) */
    char rc[3], auth[7], outcome[12];  /* journal rows */
    char pan_masked[20], pan_hmac[65]; /* hmac as hex, "" = none */
    char orig_stan[7], orig_de7[11];   /* terminal reversals (mti_class 040) */
    uint64_t created_us;
    enum rc_rev rev;
    char rev_reason[16], rev_rc[3];
    /* A stand-in approval's advice (switch.advice_queue kind 'advice', same state names as a
     * reversal's; RC_REV_NONE without one) and the issuer's last answer to it. A stand-in's
     * reversal, when there is one, is the advice queue's reversal row (rev above). */
    enum rc_rev advice;
    char advice_rc[3];
    /* RC_SRC_REVERSAL: its request's journal row is a stand-in approval that replaced the
     * request this reverses (stand-in after a timeout): checked as a reversal of a request that
     * was not approved, not as one the journal does not have. */
    bool replaced;
    /* Derived by rc_add_sw: the issuer's request key (sim_request_key) of what the issuer saw. */
    char key[48];
    bool has_key;
    /* Set by the engine. */
    long iss;    /* index of its issuer key, -1 */
    long wallet; /* index of its wallet, -1 */
    /* Pre-authorization (docs/reconcile.md): an 0100 whose hold ended without it being
     * reversed — captured by a standing completion (an approved 0220 naming it in DE 90, not
     * reversed), or an increment of a pre-auth captured or reversed, or a hold the issuer
     * expired — stands for nothing itself. */
    bool hold_ended;
};

/* Everything the issuer booked under one request key K: K itself and its reversal 'rev:' || K.
 * (Ledger kinds 'opening' and 'adjustment' are not requests and never reach here.) */
struct rc_iss {
    char key[48];
    bool by_key;       /* fetched by key: complete whatever the time of its rows */
    bool in_slack;     /* some row of it was booked in [from - slack, to + slack) */
    bool req, rev_req; /* wallet.requests rows K / rev:K */
    char rc[3], rev_rc[3], mti[5], proc[7];
    int64_t amount;             /* wallet.requests.amount_minor of K, -1 = none */
    long long wallet_id;        /* -1 = none known */
    int64_t ledger, rev_ledger; /* sums of wallet.ledger amounts under K / rev:K */
    unsigned ledger_rows;
    int64_t hold_amount; /* a hold under K (0: none) */
    char hold_status[10];
    int hold_currency;
    /* Set by the engine. */
    long sw;     /* the switch item that names it, -1 */
    bool named;  /* named by a switch row outside what was fetched (rc_mark_named) */
    long wallet; /* index of its wallet, -1 */
};

/* Whether s carries a stand-in approval code (DE 38 "S" + 5 digits: switchd approved it in its
 * issuer's place and owes the issuer an advice). */
bool rc_is_stand_in(const struct rc_sw *s);

/* Its net effect on the wallet's available balance: ledger under K and rev:K, minus the amount
 * of a hold under K while the hold is active. */
int64_t rc_iss_net(const struct rc_iss *i);

struct rc_wallet {
    long long id; /* wallet_id; 0 for "a wallet the issuer does not name" (see pan) */
    int currency; /* -1 unknown */
    char pan_masked[20];
    char pan_hmac[65];
    bool broken; /* wallet.invariant_violations lists it */
    int64_t balance, ledger_sum;
};

/* One leg of a transfer (switch.transfers): its journal row (identity: DE 41
 * switch.transfer_leg_terminal, STAN switch.transfer_leg_stan, the transfer's leg date and DE 7,
 * the sender's acquirer, class 020) and that row's reversal_queue row. */
struct rc_leg {
    char terminal[9], stan[7]; /* the leg's identity (always set) */
    bool row;                  /* journaled */
    char outcome[12], rc[3];   /* its journal row */
    char issuer_stan[7], issuer_de7[11];
    int64_t amount; /* DE 4 journaled, -1 = none */
    enum rc_rev rev;
    char rev_rc[3];
};

/* One wallet-to-wallet transfer (switch.transfers, migration 0011) with, read in the same
 * snapshot, the sender's journal row (class 020), both legs and whether the sender's terminal
 * had a reversal of it acknowledged (an 0400/0420 journaled approved). */
struct rc_xfer {
    long long id;   /* transfer_id */
    bool in_window; /* created_at in [from, to) (and of --issuer): checked. Else a lookup only */
    char state[12]; /* started, aft, completed, failed, reversed */
    char request_date[11], acquirer[12], terminal[9], stan[7], de7[11]; /* the sender's */
    char sender_issuer[33], recipient_issuer[33];
    char pan_masked[20], to_masked[20]; /* the sender's and the recipient's, masked */
    int64_t amount, fee;                /* amount_minor, fee_minor: the sender's currency */
    int currency;
    int64_t recipient_amount; /* -1 = none yet */
    bool sender_row;          /* the sender's request is journaled */
    char sender_outcome[12], sender_rc[3];
    bool term_rev_acked; /* a terminal reversal of the sender's request answered 00 */
    struct rc_leg aft, oct;
};

/* The checks, in report order (docs/reconcile.md names and explains each). */
enum rc_check {
    RC_CHK_JOURNAL_ISSUER, /* 1: journal + reversal queue vs the issuer's net per request */
    RC_CHK_ISSUER_UNKNOWN, /* 2: issuer requests that move money and the switch never named */
    RC_CHK_INFLIGHT,       /* 3: switch.inflight rows left */
    RC_CHK_JOURNAL,        /* 4: approvals with auth codes, lost rows and acked terminal
                              reversals with their reversals */
    RC_CHK_TRANSFERS,      /* 5: each transfer's sender, legs, reversals and state agree */
    RC_CHK_RECORD,         /* 6: the load harness's record vs the journal and the issuer */
    RC_CHK_TOTALS,         /* 7: per currency and per wallet */
    RC_CHK_WALLET_LEDGER,  /* the issuer's own invariant: balance = sum(ledger), held = holds */
    RC_CHK_max
};
const char *rc_check_name(enum rc_check c);

struct rc_mismatch {
    enum rc_check check;
    char problem[160];
    char acquirer[12], terminal[9], stan[7], de7[11], mti[5], issuer_stan[7], issuer_de7[11];
    char pan[20];
    int64_t amount; /* -1 none */
    int currency;   /* -1 none */
    char outcome[16], rc[3];
    enum rc_rev rev;
    bool has_net, has_expected;
    int64_t issuer_net, expected;
    long long wallet_id;   /* -1 none */
    unsigned record_line;  /* 0 none */
    long long transfer_id; /* -1 none */
    char leg[4];           /* "aft", "oct", "" */
};

/* The money of one total (a currency, a wallet): what the switch says stands, what the issuer
 * booked, what pending reversals and in-flight requests leave open, and the difference
 * issuer - switch - pending (0 when all is well). With a record: the terminals' view and the
 * issuer for the same requests. */
struct rc_money {
    int64_t sw, iss, pending;
    bool in_record;
    int64_t term, term_iss;
};

/* issuer - switch - pending. */
static inline int64_t rc_money_difference(const struct rc_money *m)
{
    return m->iss - m->sw - m->pending;
}

/* Whether the terminals' view (a record) differs from the issuer's for the same requests. */
static inline bool rc_money_record_differs(const struct rc_money *m)
{
    return m->in_record && m->term != m->term_iss;
}

struct rc_ccy {
    int currency;
    struct rc_money m;
};

struct rc_wallet_total {
    size_t wallet; /* index into ctx->wallets */
    struct rc_money m;
};

/* Counts for the report: what each check looked at and what it found. */
struct rc_stats {
    unsigned long checked[RC_CHK_max], mismatches[RC_CHK_max];
    unsigned long journal_rows, journal_context, reached_issuer, approvals, reversal_rows,
        rev_pending, rev_acked, rev_failed, lost, refused_by_switch, terminal_reversals,
        orphan_reversals, inflight;
    unsigned long stand_ins, advice_pending, advice_acked, advice_failed, orphan_advices,
        replaced_reversals; /* reversals of forwarded requests a stand-in approval replaced */
    unsigned long transfer_senders; /* journal rows of transfers' senders (check 5's, not 4's) */
    unsigned long xfers, xfer_completed, xfer_failed, xfer_reversed, xfer_unfinished,
        xfer_leg_rev_pending;
    unsigned long issuer_keys, issuer_unknown_money, issuer_unknown_nomoney, issuer_named_elsewhere;
    /* record */
    unsigned long rec_lines, rec_approved_held, rec_approved_reversed, rec_declined,
        rec_unanswered_reversed, rec_unanswered_gave_up, rec_unanswered_nothing, rec_reversal_acked,
        rec_reversal_refused, rec_reversal_abandoned, rec_not_journaled;
};

struct rc_ctx {
    /* options */
    bool allow_pending;
    char acquirer[12];      /* the acquirer the record's terminals are journaled under */
    uint64_t record_now_us; /* "now" for db_request_date of the record's DE 7s */
    const struct rec_file *record;
    /* data (grown by rc_add_*) */
    struct rc_sw *sw;
    size_t nsw, capsw;
    struct rc_iss *iss;
    size_t niss, capiss;
    struct rc_wallet *wallets;
    size_t nwallets, capwallets;
    struct rc_xfer *xfers;
    size_t nxfers, capxfers;
    struct rc_map *sw_by_key, *sw_by_ident, *iss_by_key, *wallet_by_id, *xfer_by_ident;
    /* results (rc_run) */
    struct rc_mismatch *mm;
    size_t nmm, capmm;
    struct rc_ccy *ccy;
    size_t nccy;
    struct rc_wallet_total *wt;
    size_t nwt;
    struct rc_stats st;
    bool oom;
};

/* 0, or -1 when out of memory. */
__attribute__((warn_unused_result)) int rc_ctx_init(struct rc_ctx *c);
void rc_ctx_free(struct rc_ctx *c);

/* The identity string of the maps: "date|acquirer|terminal|stan|de7|class". */
void rc_ident(char out[64], const char *date, const char *acq, const char *tid, const char *stan,
              const char *de7, const char *cls);

/* Adds a copy of *s and derives its issuer key. An item whose identity is already known is
 * merged: a journal row wins over the reversal/in-flight rows of the same identity, which only
 * add their reversal state. Returns its index, or -1 when out of memory. */
long rc_add_sw(struct rc_ctx *c, const struct rc_sw *s);

/* Adds a copy of *x, indexed by its sender's identity (class 020). A transfer already added
 * (same id) is not added again; it becomes checked if this copy is. Returns its index, or -1
 * when out of memory. */
long rc_add_xfer(struct rc_ctx *c, const struct rc_xfer *x);

/* Whether a journal row is a transfer's sender's request: class 020, processing code 40. */
bool rc_is_transfer_sender(const struct rc_sw *s);

/* The identities of transfers the checks will want that are not loaded: the senders of the
 * in-window journal rows of transfers, and the record's transfer lines. cb once per identity
 * (of the sender's request, class "020"). Returns how many. */
size_t rc_wanted_xfer_idents(struct rc_ctx *c,
                             void (*cb)(void *arg, const char *date, const char *acq,
                                        const char *tid, const char *stan, const char *de7,
                                        const char *cls),
                             void *arg);

/* The issuer entry of base key k ('rev:' stripped by the caller), created empty if new.
 * NULL when out of memory. */
struct rc_iss *rc_iss_get(struct rc_ctx *c, const char *k);

/* Wallet by id, created (currency -1) if new. NULL when out of memory. */
struct rc_wallet *rc_wallet_get(struct rc_ctx *c, long long id);

/* Identities the checks will want that are not loaded: the originals of the record's requests
 * and of the terminal reversals journaled in the window. cb is called once per identity (its
 * parts). Returns how many. */
size_t rc_wanted_idents(struct rc_ctx *c,
                        void (*cb)(void *arg, const char *date, const char *acq, const char *tid,
                                   const char *stan, const char *de7, const char *cls),
                        void *arg);

/* The request keys whose issuer rows must be read whatever their time: every key named by an
 * item in the window or by a record line. cb once per key. */
size_t rc_wanted_keys(struct rc_ctx *c, void (*cb)(void *arg, const char *key), void *arg);

/* Links issuer keys to the switch items naming them; returns how many keys booked in the slack
 * window no loaded item names (cb gets each, so the loader can look for them elsewhere). */
size_t rc_attribute(struct rc_ctx *c, void (*cb)(void *arg, const char *key), void *arg);

/* The switch names key k somewhere outside the loaded items (an older request's reversal). */
void rc_mark_named(struct rc_ctx *c, const char *key);

/* Masked PAN hashes of switch items that need a wallet and have no issuer row to give one.
 * cb once per distinct hex HMAC. */
size_t rc_wanted_hmacs(struct rc_ctx *c, void (*cb)(void *arg, const char *hmac_hex), void *arg);

/* Runs every check and computes the totals. 0, or -1 when out of memory. */
__attribute__((warn_unused_result)) int rc_run(struct rc_ctx *c);

/* The full effect of an approval of a request of class cls ("010", "020") with processing code
 * proc and amount (minor units): -amount for a debit (00, 01, 09, 10), +amount for a credit of
 * an 0200 (20, 26), -amount for the hold of an 0100 debit, 0 otherwise (inquiries 30/31). */
int64_t rc_full_effect(const char *cls, const char *proc, int64_t amount);

/* ISO 4217 alphabetic code and minor units of a numeric currency ("???" / -1 if unknown). */
const char *rc_ccy_alpha(int numeric, int *minor_units);

#endif
