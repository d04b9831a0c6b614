/* The issuer's authorization decision as a pure function of a wallet snapshot and a request,
 * plus the small wire helpers that go with it (DE 54, request keys, Luhn). issuer-sim applies
 * the returned effects atomically in PostgreSQL (wallet.sim_apply) or decides again when the
 * wallet changed in between. */
#include "issuer.h"

#include "parse.h"

#include <stdio.h>
#include <string.h>

bool sim_pcode_is_debit(int pcode)
{
    return pcode == 0 || pcode == 1 || pcode == 9 || pcode == 10;
}

bool sim_pcode_is_credit(int pcode)
{
    return pcode == 20 || pcode == 26;
}

bool sim_pcode_is_inquiry(int pcode)
{
    return pcode == 30 || pcode == 31;
}

const char *sim_check_request(const struct sim_request *r)
{
    bool debit = sim_pcode_is_debit(r->pcode), credit = sim_pcode_is_credit(r->pcode);
    if (!debit && !credit && !sim_pcode_is_inquiry(r->pcode))
        return "12"; /* unknown, or 40 (transfer: a wallet has one account) */
    /* An authorization reserves funds: there is nothing to reserve for a credit. */
    if (credit && r->msg == SIM_MSG_AUTH)
        return "12";
    if ((debit || credit) && (r->amount_minor <= 0 || r->amount_minor > SIM_MAX_BALANCE))
        return "13";
    return NULL;
}

static const char *ledger_kind(int pcode)
{
    switch (pcode) {
    case 1:
        return "cash_out";
    case 10:
        return "funding";
    case 20:
        return "refund";
    case 26:
        return "credit";
    default:
        return "purchase"; /* 00, 09 (the cash-back part travels inside DE 4) */
    }
}

static void set_rc(struct sim_effects *eff, const char *rc)
{
    memcpy(eff->rc, rc, 3);
}

/* The wallet's counters as they stand on the request's day and month: a counter that belongs
 * to another period counts 0 (the first request of a new day or month resets it). */
struct usage {
    int64_t day, day_cash, day_count, day_credit, month_debit, month_credit;
};

static void current_usage(const struct sim_wallet *w, const struct sim_request *r, struct usage *u)
{
    bool today = strcmp(w->usage_date, r->today) == 0;
    bool month = w->usage_month[0] != '\0' && strncmp(w->usage_month, r->today, 7) == 0;
    u->day = today ? w->usage_minor : 0;
    u->day_cash = today ? w->usage_cash_minor : 0;
    u->day_count = today ? w->usage_count : 0;
    u->day_credit = today ? w->day_credit_minor : 0;
    u->month_debit = month ? w->month_debit_minor : 0;
    u->month_credit = month ? w->month_credit_minor : 0;
}

/* A limit (-1 = none) that `would` passes declines with rc; the rule, its limit and the would-be
 * amount go into eff for the issuer's log. Returns true when it declined. */
static bool over_limit(struct sim_effects *eff, const char *rc, const char *rule, int64_t limit,
                       int64_t would)
{
    if (limit < 0 || would <= limit)
        return false;
    set_rc(eff, rc);
    eff->rule = rule;
    eff->rule_limit = limit;
    eff->rule_would = would;
    return true;
}

/* An approval's counters: all of them, for the request's day and month (u already counts it). */
static void record_usage(struct sim_effects *eff, const struct sim_request *r,
                         const struct usage *u)
{
    eff->usage_set = true;
    memcpy(eff->usage_date, r->today, sizeof eff->usage_date);
    memcpy(eff->usage_month, r->today, 8); /* "YYYY-MM-" */
    memcpy(eff->usage_month + 8, "01", 3);
    eff->usage_minor = u->day;
    eff->usage_cash_minor = u->day_cash;
    eff->usage_count = u->day_count;
    eff->day_credit_minor = u->day_credit;
    eff->month_debit_minor = u->month_debit;
    eff->month_credit_minor = u->month_credit;
}

/* A credit (20 refund, 26 OCT): 13 past 12 digits, then the tier's balance cap (57), then its
 * daily and monthly credit amount limits (61). */
static void decide_credit(const struct sim_wallet *w, const struct sim_request *r,
                          struct sim_effects *eff)
{
    int64_t amt = r->amount_minor;
    if (w->balance_minor > SIM_MAX_BALANCE - amt) {
        set_rc(eff, "13");
        return;
    }
    struct usage u;
    current_usage(w, r, &u);
    if (over_limit(eff, "57", "tier_max_balance", w->max_balance_minor, w->balance_minor + amt) ||
        over_limit(eff, "61", "tier_credit_daily", w->credit_daily_limit_minor,
                   u.day_credit + amt) ||
        over_limit(eff, "61", "tier_credit_monthly", w->credit_monthly_limit_minor,
                   u.month_credit + amt))
        return;
    u.day_credit += amt;
    u.month_credit += amt;
    record_usage(eff, r, &u);
    eff->ledger_minor = amt;
    eff->kind = ledger_kind(r->pcode);
    set_rc(eff, "00");
}

/* A debit (00, 01, 09, 10; a hold for 0100): the wallet's daily count (65), its daily amount and
 * daily cash amount (61), the tier's daily and monthly debit amounts (61), available funds (51). */
static void decide_debit(const struct sim_wallet *w, const struct sim_request *r,
                         struct sim_effects *eff)
{
    int64_t amt = r->amount_minor;
    bool is_cash = r->pcode == 1;
    struct usage u;
    current_usage(w, r, &u);
    if (over_limit(eff, "65", "wallet_daily_count", w->daily_count_limit, u.day_count + 1) ||
        over_limit(eff, "61", "wallet_daily_amount", w->daily_limit_minor, u.day + amt) ||
        (is_cash &&
         over_limit(eff, "61", "wallet_daily_cash", w->daily_cash_limit_minor, u.day_cash + amt)) ||
        over_limit(eff, "61", "tier_debit_daily", w->debit_daily_limit_minor, u.day + amt) ||
        over_limit(eff, "61", "tier_debit_monthly", w->debit_monthly_limit_minor,
                   u.month_debit + amt))
        return;
    if (w->balance_minor - w->held_minor < amt) {
        set_rc(eff, "51");
        return;
    }
    if (r->msg == SIM_MSG_AUTH) {
        eff->hold_minor = amt;
    } else {
        eff->ledger_minor = -amt;
        eff->kind = ledger_kind(r->pcode);
    }
    u.day += amt;
    u.day_cash += is_cash ? amt : 0;
    u.day_count++;
    u.month_debit += amt;
    record_usage(eff, r, &u);
    set_rc(eff, "00");
}

/* Checks in this order (first failing one answers): request shape (12/13), card known (14),
 * status lost (62) / blocked (05), expiry for debits and inquiries (54: the wallet's card expired
 * before this month, or DE 14 differs from it), PIN when entered (75 when already at the try
 * limit, else verify: wrong → 55, or 75 on the try that reaches the limit; right → counter reset),
 * currency (57), then per kind: inquiry approved; credit: decide_credit; debit: decide_debit.
 * The PIN counter change is kept whatever the final code. */
int sim_decide(const struct sim_wallet *w, const struct sim_request *r, struct sim_effects *eff)
{
    memset(eff, 0, sizeof *eff);
    eff->pin_tries = -1;
    const char *bad = sim_check_request(r);
    if (bad) {
        set_rc(eff, bad);
        return SIM_DECIDED;
    }
    if (!w) {
        set_rc(eff, "14");
        return SIM_DECIDED;
    }
    if (w->status == SIM_LOST) {
        set_rc(eff, "62");
        return SIM_DECIDED;
    }
    if (w->status == SIM_BLOCKED) {
        set_rc(eff, "05");
        return SIM_DECIDED;
    }
    bool credit = sim_pcode_is_credit(r->pcode), inquiry = sim_pcode_is_inquiry(r->pcode);
    if (!credit && (strcmp(w->expiry, r->now_yymm) < 0 ||
                    (r->expiry[0] != '\0' && strcmp(r->expiry, w->expiry) != 0))) {
        set_rc(eff, "54");
        return SIM_DECIDED;
    }
    if (r->pin_present) {
        if (w->pin_tries >= w->pin_try_limit) {
            set_rc(eff, "75");
            return SIM_DECIDED;
        }
        if (r->pin == SIM_PIN_UNCHECKED) {
            eff->rc[0] = '\0';
            return SIM_NEED_PIN;
        }
        if (r->pin == SIM_PIN_BAD) {
            eff->pin_tries = w->pin_tries + 1;
            set_rc(eff, eff->pin_tries >= w->pin_try_limit ? "75" : "55");
            return SIM_DECIDED;
        }
        if (w->pin_tries != 0)
            eff->pin_tries = 0;
    }
    if (r->currency != w->currency)
        set_rc(eff, "57");
    else if (inquiry)
        set_rc(eff, "00");
    else if (credit)
        decide_credit(w, r, eff);
    else
        decide_debit(w, r, eff);
    return SIM_DECIDED;
}

int sim_decide_advice(const struct sim_wallet *w, const struct sim_request *r,
                      struct sim_effects *eff)
{
    memset(eff, 0, sizeof *eff);
    eff->pin_tries = -1;
    const char *bad = sim_check_request(r);
    if (bad) {
        set_rc(eff, bad);
        return SIM_DECIDED;
    }
    if (!w) {
        set_rc(eff, "14");
        return SIM_DECIDED;
    }
    if (r->currency != w->currency) {
        set_rc(eff, "57");
        return SIM_DECIDED;
    }
    /* The switch approved it: no status, expiry, limit or funds check; the counters still count
     * it, so that the day's ordinary requests see what the stand-in spent. */
    int64_t amt = r->amount_minor;
    struct usage u;
    current_usage(w, r, &u);
    set_rc(eff, "00");
    if (sim_pcode_is_inquiry(r->pcode))
        return SIM_DECIDED;
    if (sim_pcode_is_credit(r->pcode)) {
        u.day_credit += amt;
        u.month_credit += amt;
        eff->ledger_minor = amt;
    } else {
        u.day += amt;
        u.day_cash += r->pcode == 1 ? amt : 0;
        u.day_count++;
        u.month_debit += amt;
        if (r->msg == SIM_MSG_AUTH)
            eff->hold_minor = amt;
        else
            eff->ledger_minor = -amt;
    }
    if (eff->ledger_minor != 0)
        eff->kind = ledger_kind(r->pcode);
    record_usage(eff, r, &u);
    return SIM_DECIDED;
}

static int put_amount(char *out, const char *type, int currency, int64_t v)
{
    char sign = v < 0 ? 'D' : 'C';
    uint64_t a = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    if (a > (uint64_t)SIM_MAX_BALANCE)
        return -1;
    char tmp[21];
    snprintf(tmp, sizeof tmp, "00%s%03d%c%012llu", type, currency, sign, (unsigned long long)a);
    memcpy(out, tmp, 20);
    return 0;
}

int sim_format_de54(int currency, int64_t ledger_minor, int64_t available_minor, char out[41])
{
    if (currency < 1 || currency > 999)
        return -1;
    if (put_amount(out, "01", currency, ledger_minor) != 0 ||
        put_amount(out + 20, "02", currency, available_minor) != 0)
        return -1;
    out[40] = '\0';
    return 0;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

int sim_request_key(const char *acq, size_t acq_len, const char *tid, size_t tid_len,
                    const char *stan, size_t stan_len, const char *de7, size_t de7_len, char *out,
                    size_t cap)
{
    if (acq_len > 11 || !digits(acq, acq_len) || tid_len != 8 || stan_len != 6 ||
        !digits(stan, 6) || de7_len != 10 || !digits(de7, 10) || cap < 40)
        return -1;
    for (size_t i = 0; i < 8; i++)
        if (tid[i] < 0x20 || tid[i] > 0x7E)
            return -1;
    size_t o = 0;
    for (size_t i = acq_len; i < 11; i++)
        out[o++] = '0';
    memcpy(out + o, acq, acq_len);
    o += acq_len;
    out[o++] = ':';
    memcpy(out + o, tid, 8);
    o += 8;
    out[o++] = ':';
    memcpy(out + o, stan, 6);
    o += 6;
    out[o++] = ':';
    memcpy(out + o, de7, 10);
    o += 10;
    out[o] = '\0';
    return 0;
}

int sim_seed_spec(uint64_t index, struct sim_seed_spec *out)
{
    static const char *const bins[4] = { "489001", "489002", "489003", "489004" };
    static const int ccys[4] = { 504, 952, 950, 929 };
    /* The README's demo cards: BIN slot, PIN, expiry, status, balance, daily limit, KYC tier
     * (1 basic; the XOF card's 500,000 is above basic's cap, so it is 2, full). */
    static const struct {
        int bin;
        const char *pin, *expiry, *status;
        int64_t balance, limit;
        int tier;
    } demo[8] = {
        { 0, "1234", "2812", "active", 100000, -1, 1 },
        { 1, "4321", "2812", "active", 500000, -1, 2 },
        { 2, "1111", "2812", "active", 1000, -1, 1 },
        { 3, "2222", "2812", "active", 500000, -1, 1 },
        { 0, "1234", "2812", "blocked", 100000, -1, 1 },
        { 0, "1234", "2812", "lost", 100000, -1, 1 },
        { 0, "1234", "2001", "active", 100000, -1, 1 },
        { 0, "1234", "2812", "active", 100000, 5000, 1 },
    };
    if (index < 1 || index > 999999999)
        return -1;
    memset(out, 0, sizeof *out);
    int b = (int)((index - 1) % 4);
    if (index <= 8) {
        b = demo[index - 1].bin;
        memcpy(out->pin, demo[index - 1].pin, 5);
        memcpy(out->expiry, demo[index - 1].expiry, 5);
        out->status = demo[index - 1].status;
        out->balance_minor = demo[index - 1].balance;
        out->daily_limit_minor = demo[index - 1].limit;
        out->kyc_tier = demo[index - 1].tier;
    } else {
        snprintf(out->pin, sizeof out->pin, "%04u", (unsigned)((index * 7919 + 1234) % 10000));
        memcpy(out->expiry, "2812", 5);
        out->status = "active";
        out->balance_minor = 100000 + (int64_t)(index % 50) * 1000;
        out->daily_limit_minor = -1;
        out->kyc_tier = 9;
    }
    out->currency = ccys[b];
    out->ibm = b == 1;
    snprintf(out->pan, sizeof out->pan, "%s%09u", bins[b], (unsigned)index);
    out->pan[15] = at_luhn_digit(out->pan, 15);
    out->pan[16] = '\0';
    return 0;
}
