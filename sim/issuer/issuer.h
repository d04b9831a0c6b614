/* libatlas_issuer: the pure part of issuer-sim — the authorization decision over a wallet
 * snapshot, request keys, and the DE 54 additional-amounts format. No I/O, no globals; the
 * daemon (txn.c) feeds it what it read from PostgreSQL and the HSM, and applies the effects
 * it returns through db/wallet.h (wallet.sim_apply, latest version in
 * db/migrations/0008_wallet_kyc_limits.sql). */
#ifndef ATLAS_SIM_ISSUER_H
#define ATLAS_SIM_ISSUER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest balance DE 54 can carry (12 digits). Credits that would pass it are refused (13). */
#define SIM_MAX_BALANCE 999999999999LL

enum sim_status { SIM_ACTIVE, SIM_BLOCKED, SIM_LOST };

/* What the decision needs of a wallet row (a snapshot; -1 = no limit). */
struct sim_wallet {
    char expiry[5]; /* YYMM */
    int currency;   /* ISO 4217 numeric */
    int64_t balance_minor, held_minor;
    enum sim_status status;
    int pin_tries, pin_try_limit;
    int64_t daily_limit_minor, daily_cash_limit_minor, daily_count_limit;
    char usage_date[11]; /* YYYY-MM-DD the daily counters belong to, "" = never used */
    int64_t usage_minor, usage_cash_minor, usage_count; /* the day's debits */
    int64_t day_credit_minor;                           /* the day's credits */
    char usage_month[11]; /* YYYY-MM-01 the monthly counters belong to, "" = never used */
    int64_t month_debit_minor, month_credit_minor;
    /* The KYC tier's limits for the wallet's currency (wallet.kyc_tiers; -1 = no limit). */
    int64_t max_balance_minor, debit_daily_limit_minor, debit_monthly_limit_minor,
        credit_daily_limit_minor, credit_monthly_limit_minor;
};

enum sim_msg { SIM_MSG_AUTH, SIM_MSG_FINANCIAL }; /* 0100 (hold) / 0200 (move money) */

/* Outcome of the issuer's PIN verification (through hsm-sim). */
enum sim_pin { SIM_PIN_UNCHECKED, SIM_PIN_OK, SIM_PIN_BAD };

struct sim_request {
    enum sim_msg msg;
    int pcode;            /* first two digits of DE 3 */
    int64_t amount_minor; /* DE 4; -1 when absent (balance inquiries) */
    int currency;         /* DE 49 */
    char expiry[5];       /* DE 14 or "" */
    bool pin_present;     /* DE 52 present */
    enum sim_pin pin;     /* result of the verification once done */
    char today[11];       /* YYYY-MM-DD (UTC): the day of the usage counters */
    char now_yymm[5];     /* current YYMM (UTC): cards expire after their expiry month */
};

/* What to do: the response code and the changes to record (wallet.sim_apply's arguments). */
struct sim_effects {
    char rc[3];
    int pin_tries;        /* new PIN try counter, -1 = unchanged */
    int64_t hold_minor;   /* > 0: place a hold of this amount */
    int64_t ledger_minor; /* != 0: ledger movement (credit > 0, debit < 0) */
    const char *kind;     /* ledger kind ("purchase", ...) when ledger_minor != 0 */
    bool usage_set;       /* write every usage counter below (day usage_date, month usage_month) */
    char usage_date[11];
    int64_t usage_minor, usage_cash_minor, usage_count, day_credit_minor;
    char usage_month[11]; /* YYYY-MM-01 */
    int64_t month_debit_minor, month_credit_minor;
    /* A decline by a limit: the rule's name ("tier_max_balance", ...), the limit and the amount
     * the request would have brought the counter (or balance) to — for the issuer's log. NULL
     * rule for every other answer. */
    const char *rule;
    int64_t rule_limit, rule_would;
};

/* Return values of sim_decide. */
enum { SIM_DECIDED = 0, SIM_NEED_PIN = 1 };

/* Checks what can be judged from the request alone (processing code known and allowed for the
 * message class, amount shape). Returns NULL when fine, else the response code ("12", "13"). */
const char *sim_check_request(const struct sim_request *r);

/* The decision. w is NULL when no wallet has the PAN. Returns SIM_NEED_PIN (eff untouched but
 * zeroed) when a PIN was entered and r->pin is still SIM_PIN_UNCHECKED: verify it and call again;
 * else SIM_DECIDED with eff filled. The order of the checks is documented in docs/issuer-sim.md
 * and the code below; every path sets eff->rc. */
int sim_decide(const struct sim_wallet *w, const struct sim_request *r, struct sim_effects *eff);

/* The effects of a stand-in advice from the switch (an 0120/0220 without DE 90: the switch
 * approved it in the issuer's place). A forced post: the request's shape (12, 13), the card known
 * (14) and the wallet's currency (57) are checked — those refuse it for good — and nothing else:
 * no status, expiry, PIN, limit or funds check. 0120 (0100's advice): a hold; 0220: the ledger
 * movement; the usage counters count it. Always SIM_DECIDED. docs/issuer-sim.md "Advices". */
int sim_decide_advice(const struct sim_wallet *w, const struct sim_request *r,
                      struct sim_effects *eff);

/* True for processing codes that move money out of the wallet (00, 01, 09, 10). */
bool sim_pcode_is_debit(int pcode);
/* True for 20 (refund) and 26 (OCT). */
bool sim_pcode_is_credit(int pcode);
/* True for 30 and 31. */
bool sim_pcode_is_inquiry(int pcode);

/* DE 54 (additional amounts): two 20-character amounts, ledger ("00" "01") then available
 * ("00" "02"): account type 2 + amount type 2 + currency 3 + 'C'/'D' + 12 digits. Writes 40
 * characters + NUL into out. Returns 0, or -1 if an amount does not fit 12 digits or the
 * currency is not 1..999. */
__attribute__((warn_unused_result)) int sim_format_de54(int currency, int64_t ledger_minor,
                                                        int64_t available_minor, char out[41]);

/* The identity of a request on the issuer link: acquirer id (DE 32, zero-padded to 11 digits),
 * terminal (DE 41), STAN (DE 11) and transmission time (DE 7), joined with ':'. Writes a NUL-
 * terminated key into out (cap >= 40). Returns 0 or -1 if a part has the wrong shape. */
__attribute__((warn_unused_result)) int
sim_request_key(const char *acq, size_t acq_len, const char *tid, size_t tid_len, const char *stan,
                size_t stan_len, const char *de7, size_t de7_len, char *out, size_t cap);

/* The deterministic demo wallet number index (1-based) of `issuer-sim seed`: wallets 1..8 are the
 * demo cards of the README's demo world; the others take BINs 489001..489004 in turn, account
 * number = index (9 digits), a Luhn check digit, PIN = (index * 7919 + 1234) mod 10000 on 4 digits,
 * expiry 2812, active, no wallet limits, KYC tier 9 ("load": no tier limit bites), PIN method IBM
 * 3624 offset for BIN 489002 and Visa PVV (PVKI 1) otherwise, balance 100000 + (index mod 50) *
 * 1000 minor units. */
struct sim_seed_spec {
    char pan[20];
    char pin[5];
    char expiry[5];
    const char *status; /* "active", "blocked", "lost" */
    int currency;
    int64_t balance_minor;
    bool ibm;                  /* IBM 3624 offset, else Visa PVV */
    int64_t daily_limit_minor; /* -1 = none */
    int kyc_tier;              /* wallet.kyc_tiers: 1 basic, 2 full, 9 load */
};

/* Fills out for wallet index (1..999999999). Returns 0 or -1 when index is out of range. */
__attribute__((warn_unused_result)) int sim_seed_spec(uint64_t index, struct sim_seed_spec *out);

#endif
