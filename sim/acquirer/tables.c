/* Reference tables of the acquirer simulator: response-code meanings, transaction types (MTI,
 * processing code, PIN default) and the demo cards of the README's demo world; plus amount
 * parsing and formatting in minor units (never floating point) for common/currency.h's
 * currencies. */
#include "acquirer.h"

#include <stdio.h>
#include <string.h>

#include "parse.h"

/* Minor units never exceed DE 4's 12 digits. */
#define AMOUNT_MAX 999999999999ull

int sim_amount_parse(const char *text, const struct at_currency *c, uint64_t *minor, char *err,
                     size_t errcap)
{
    uint64_t v = 0;
    int decimals = -1; /* digits seen after the point, -1 = no point */
    size_t digits = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '.') {
            if (decimals >= 0 || digits == 0) {
                snprintf(err, errcap, "amount: misplaced decimal point");
                return -1;
            }
            decimals = 0;
            continue;
        }
        if (*p < '0' || *p > '9') {
            snprintf(err, errcap, "amount: only digits and one decimal point are allowed");
            return -1;
        }
        if (decimals >= 0 && ++decimals > c->exponent) {
            snprintf(err, errcap, "amount: %s has %d decimal%s", c->alpha, c->exponent,
                     c->exponent == 1 ? "" : "s");
            return -1;
        }
        digits++;
        if (v > AMOUNT_MAX / 10) {
            snprintf(err, errcap, "amount: too large for 12 digits");
            return -1;
        }
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (digits == 0 || decimals == 0) {
        snprintf(err, errcap, "amount: empty or ends with a decimal point");
        return -1;
    }
    for (int i = decimals < 0 ? 0 : decimals; i < c->exponent; i++) {
        if (v > AMOUNT_MAX / 10) {
            snprintf(err, errcap, "amount: too large for 12 digits");
            return -1;
        }
        v *= 10;
    }
    if (v > AMOUNT_MAX) {
        snprintf(err, errcap, "amount: too large for 12 digits");
        return -1;
    }
    *minor = v;
    return 0;
}

char *sim_amount_format(uint64_t minor, const struct at_currency *c, char *out, size_t cap)
{
    if (!c) {
        snprintf(out, cap, "%llu (minor units)", (unsigned long long)minor);
        return out;
    }
    char num[32];
    at_format_minor(minor, (unsigned)c->exponent, num, sizeof num);
    snprintf(out, cap, "%s %s", num, c->alpha);
    return out;
}

const char *sim_rc_text(const char rc[2])
{
    const char *t = iso_rc_text(rc);
    return t ? t : "unknown code";
}

static const struct {
    const char *name, *mti, *proc;
    bool pin;
} types[SIM_T_max] = {
    [SIM_T_PURCHASE] = { "purchase", "0200", "000000", true },
    [SIM_T_CASH] = { "cash", "0200", "010000", true },
    [SIM_T_CASHBACK] = { "cashback", "0200", "090000", true },
    [SIM_T_REFUND] = { "refund", "0200", "200000", false },
    [SIM_T_BALANCE] = { "balance", "0100", "300000", true },
    [SIM_T_AFT] = { "aft", "0200", "100000", true },
    [SIM_T_OCT] = { "oct", "0200", "260000", false },
    [SIM_T_TRANSFER] = { "transfer", "0200", "400000", true },
    [SIM_T_AUTH] = { "auth", "0100", "000000", true },
    [SIM_T_REVERSAL] = { "reversal", "0400", "000000", false },
    [SIM_T_ECHO] = { "echo", "0800", "", false },
    [SIM_T_PREAUTH] = { "preauth", "0100", "000000", true },
    [SIM_T_COMPLETION] = { "completion", "0220", "000000", false },
    [SIM_T_INCREMENTAL] = { "incremental", "0100", "000000", false },
    [SIM_T_KEYS] = { "keychange", "0800", "", false },
};

const char *sim_type_name(enum sim_type t)
{
    return (unsigned)t < SIM_T_max ? types[t].name : "?";
}

int sim_type_parse(const char *name, enum sim_type *out)
{
    for (int i = 0; i < SIM_T_max; i++)
        if (strcmp(name, types[i].name) == 0) {
            *out = (enum sim_type)i;
            return 0;
        }
    return -1;
}

const char *sim_type_mti(enum sim_type t)
{
    return (unsigned)t < SIM_T_max ? types[t].mti : "0200";
}

const char *sim_type_proc(enum sim_type t)
{
    return (unsigned)t < SIM_T_max ? types[t].proc : "000000";
}

bool sim_type_wants_pin(enum sim_type t)
{
    return (unsigned)t < SIM_T_max && types[t].pin;
}

bool sim_recipient_pan_ok(const char *s)
{
    return at_is_digits(s, 12, 19) && at_luhn_ok(s, strlen(s));
}

bool sim_recipient_msisdn_ok(const char *s)
{
    return s[0] == '+' && at_is_digits(s + 1, 8, 15);
}

static const struct sim_demo_card demo_cards[] = {
    { "4890010000000012", "1234", "2812", "504" }, { "4890020000000029", "4321", "2812", "952" },
    { "4890030000000036", "1111", "2812", "950" }, { "4890040000000043", "2222", "2812", "929" },
    { "4890010000000053", "1234", "2812", "504" }, { "4890010000000061", "1234", "2812", "504" },
    { "4890010000000079", "1234", "2001", "504" }, { "4890010000000087", "1234", "2812", "504" },
};

const struct sim_demo_card *sim_demo_card_find(const char *pan)
{
    for (size_t i = 0; i < sizeof demo_cards / sizeof demo_cards[0]; i++)
        if (strcmp(pan, demo_cards[i].pan) == 0)
            return &demo_cards[i];
    return NULL;
}
