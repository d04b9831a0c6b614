/* The acceptance rules of the acquirer interface (docs/acquirer-interface.md states
 * the same table for terminal writers; keep both in step). */
#include "validate.h"

#include "clock.h"
#include "isonet.h"
#include "parse.h"

#include <string.h>

static int fail(struct sw_validation *v, const char *rc, int field, const char *reason)
{
    memcpy(v->rc, rc, 3);
    v->field = field;
    v->reason = reason;
    return -1;
}

static int two(const uint8_t *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

static int days_in_month(int64_t y, int m)
{
    static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

bool sw_de7_valid(const uint8_t *p, size_t len)
{
    if (!p || len != 10)
        return false;
    for (size_t i = 0; i < 10; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    int mo = two(p), d = two(p + 2);
    /* February 29 is a date in some year: the year is the receiver's guess. */
    return mo >= 1 && mo <= 12 && d >= 1 && d <= (mo == 2 ? 29 : days_in_month(2001, mo)) &&
           two(p + 4) < 24 && two(p + 6) < 60 && two(p + 8) < 60;
}

bool sw_de7_wall_ms(const uint8_t *p, size_t len, uint64_t now_ms, uint64_t *out)
{
    if (!sw_de7_valid(p, len))
        return false;
    int64_t now_s = (int64_t)(now_ms / 1000), y;
    unsigned m, d;
    at_civil_from_days(now_s / 86400, &y, &m, &d);
    int mo = two(p), day = two(p + 2);
    int64_t secs = two(p + 4) * 3600 + two(p + 6) * 60 + two(p + 8), best = -1;
    for (int64_t cy = y - 1; cy <= y + 1; cy++) {
        if (day > days_in_month(cy, mo))
            continue;
        int64_t t = at_days_from_civil(cy, (unsigned)mo, (unsigned)day) * 86400 + secs;
        if (best < 0 ||
            (t > now_s ? t - now_s : now_s - t) < (best > now_s ? best - now_s : now_s - best))
            best = t;
    }
    if (best < 0)
        return false;
    *out = (uint64_t)best * 1000;
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '0')
            return false;
    return true;
}

static bool digits_only(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return n > 0;
}

static enum sw_msg_kind classify(const char mti[4])
{
    if (mti[0] != '0')
        return SW_KIND_UNSUPPORTED;
    if (mti[2] == '1' || mti[2] == '3')
        return SW_KIND_RESPONSE;
    if (mti[2] != '0' && mti[2] != '2')
        return SW_KIND_UNSUPPORTED;
    bool repeat_ok = mti[3] == '0' || mti[3] == '1';
    if (!repeat_ok)
        return SW_KIND_UNSUPPORTED;
    switch (mti[1]) {
    case '1':
        return mti[2] == '0' ? SW_KIND_AUTH : SW_KIND_UNSUPPORTED;
    case '2': /* 0220: a pre-auth completion (DE 90 checked by sw_validate) */
        return SW_KIND_FINANCIAL;
    case '4':
        return SW_KIND_REVERSAL;
    case '8':
        return mti[2] == '0' ? SW_KIND_NETMGMT : SW_KIND_UNSUPPORTED;
    default:
        return SW_KIND_UNSUPPORTED;
    }
}

/* PAN from DE 2, else from track 2 (DE 35) up to its separator. */
static int find_pan(const struct iso_msg *m, struct sw_validation *v)
{
    size_t len;
    int field = 2;
    const uint8_t *p = iso_get(m, 2, &len);
    if (!p) {
        field = 35;
        p = iso_get(m, 35, &len);
        if (!p)
            return fail(v, "30", 2, "PAN missing (neither DE 2 nor DE 35)");
        size_t i = 0;
        while (i < len && p[i] != '=' && p[i] != 'D')
            i++;
        if (i == len)
            return fail(v, "30", 35, "track 2 has no separator");
        len = i;
    }
    if (len < 12 || len > 19)
        return fail(v, "14", field, "PAN length outside 12..19");
    if (!at_luhn_ok((const char *)p, len))
        return fail(v, "14", field, "PAN fails the Luhn check");
    v->pan = p;
    v->pan_len = len;
    return 0;
}

static bool proc_known(int proc)
{
    switch (proc) {
    case SW_PROC_PURCHASE:
    case SW_PROC_CASH:
    case SW_PROC_CASHBACK:
    case SW_PROC_AFT:
    case SW_PROC_REFUND:
    case SW_PROC_OCT:
    case SW_PROC_BALANCE:
    case SW_PROC_BALANCE2:
    case SW_PROC_TRANSFER:
        return true;
    default:
        return false;
    }
}

/* A transfer is a financial request with its sender's PIN and its recipient in DE 103. */
static int check_transfer(const struct iso_msg *m, struct sw_validation *v)
{
    size_t len;
    const uint8_t *p = iso_get(m, 103, &len);
    if (v->kind != SW_KIND_FINANCIAL)
        return fail(v, "12", 3, "a transfer is a financial request (0200)");
    if (!p)
        return fail(v, "30", 103, "the recipient (DE 103) is missing");
    if (!v->has_pin)
        return fail(v, "30", 52, "a transfer carries the sender's PIN");
    if (p[0] == '+') {
        if (len < 9 || len > 16 || p[1] == '0' || !digits_only(p + 1, len - 1))
            return fail(v, "30", 103, "the recipient's mobile number is not + and 8..15 digits");
        v->recipient_msisdn = true;
    } else {
        if (len < 12 || len > 19 || !digits_only(p, len))
            return fail(v, "14", 103, "the recipient's PAN is not 12..19 digits");
        if (!at_luhn_ok((const char *)p, len))
            return fail(v, "14", 103, "the recipient's PAN fails the Luhn check");
    }
    v->recipient = p;
    v->recipient_len = len;
    return 0;
}

int sw_validate(const struct iso_msg *m, struct sw_validation *v)
{
    static const int common_fields[] = { 7, 11, 41 };
    size_t len;
    const uint8_t *p;

    memset(v, 0, sizeof *v);
    v->proc = -1;
    memcpy(v->rc, "00", 3);
    v->kind = classify(m->mti);

    switch (v->kind) {
    case SW_KIND_UNSUPPORTED:
        return fail(v, "12", 0, "message type not supported");
    case SW_KIND_RESPONSE:
        return fail(v, "30", 0, "a response sent by a terminal");
    case SW_KIND_NETMGMT:
        if (!iso_has(m, 70))
            return fail(v, "30", 70, "network management code (DE 70) missing");
        if (!iso_has(m, 11))
            return fail(v, "30", 11, "STAN (DE 11) missing");
        return 0;
    default:
        break;
    }

    for (size_t i = 0; i < sizeof common_fields / sizeof common_fields[0]; i++)
        if (!iso_has(m, common_fields[i]))
            return fail(v, "30", common_fields[i], "mandatory field missing");

    p = iso_get(m, 7, &len);
    if (!sw_de7_valid(p, len))
        return fail(v, "30", 7, "transmission date and time (DE 7) is not a valid MMDDhhmmss");
    p = iso_get(m, 3, &len);
    if (!p || len != 6)
        return fail(v, "30", 3, "processing code (DE 3) missing");
    v->proc = (p[0] - '0') * 10 + (p[1] - '0');
    if (!proc_known(v->proc))
        return fail(v, "12", 3, "processing code not supported");

    if (find_pan(m, v) != 0)
        return -1;

    bool balance = v->proc == SW_PROC_BALANCE || v->proc == SW_PROC_BALANCE2;
    if (!balance) {
        p = iso_get(m, 4, &len);
        if (!p)
            return fail(v, "30", 4, "amount (DE 4) missing");
        if (all_zero(p, len) && v->kind != SW_KIND_REVERSAL)
            return fail(v, "13", 4, "amount is zero");
    }
    if (!iso_has(m, 49))
        return fail(v, "30", 49, "currency (DE 49) missing");
    if (!iso_has(m, 64) && !iso_has(m, 128))
        return fail(v, "30", 64, "MAC (DE 64 or DE 128) missing");
    if (iso_has(m, 64) && iso_has(m, 128))
        return fail(v, "30", 128, "both DE 64 and DE 128 carry a MAC");
    v->has_pin = iso_has(m, 52) || iso_has(m, 110); /* DE 110: AES PIN block */
    if (v->proc == SW_PROC_TRANSFER && m->mti[2] == '2' && v->kind == SW_KIND_FINANCIAL)
        return fail(v, "12", 3, "a transfer is a financial request (0200)");
    if (v->proc == SW_PROC_TRANSFER && v->kind != SW_KIND_REVERSAL && check_transfer(m, v) != 0)
        return -1;
    if (v->kind == SW_KIND_REVERSAL && v->has_pin)
        return fail(v, "30", 52, "a reversal carries no PIN");
    /* DE 90 of a reversal names its original, whose DE 7 is a real date like any DE 7; so does
     * that of a completion (0220, where it is mandatory) or an incremental 0100: the pre-auth. */
    struct isonet_de90 orig;
    v->completion = v->kind == SW_KIND_FINANCIAL && m->mti[2] == '2';
    int de90 = v->kind == SW_KIND_REVERSAL || v->kind == SW_KIND_AUTH || v->completion
                   ? isonet_de90_get(m, &orig)
                   : 0;
    if (de90 < 0)
        return fail(v, "30", 90, "original data elements (DE 90) are not 42 digits");
    if (de90 > 0 && !sw_de7_valid((const uint8_t *)orig.de7, 10))
        return fail(v, "30", 90,
                    "original data elements (DE 90) are not 42 digits with a valid DE 7");
    if (v->completion && de90 == 0)
        return fail(v, "12", 90, "an 0220 from a terminal is a completion: DE 90 names its 0100");
    if (de90 > 0 && v->kind != SW_KIND_REVERSAL) {
        v->names_original = true;
        if (memcmp(orig.mti, "010", 3) != 0)
            return fail(v, "12", 90, "DE 90 of a completion or an increment names an 0100");
        if (v->proc != SW_PROC_PURCHASE && v->proc != SW_PROC_CASH && v->proc != SW_PROC_CASHBACK)
            return fail(v, "12", 3, "a pre-authorization is a purchase (00, 01 or 09)");
        if (v->completion && v->has_pin)
            return fail(v, "30", 52, "a completion carries no PIN");
    }
    return 0;
}
