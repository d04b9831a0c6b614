/* issuer-sim's acceptance rules for requests and reversals (docs/issuer-sim.md, "The link"): the
 * mandatory fields and their shapes (→ 30), the request key and the reversed original's, and
 * the decision's view of the request with the checks it alone can answer (→ 12, 13). */
#include "issuer_int.h"

#include "log.h"
#include "parse.h"

#include <string.h>
#include <time.h>

bool field_str(const struct iso_msg *m, int f, size_t min, size_t max, char *out)
{
    size_t n;
    const uint8_t *v = iso_get(m, f, &n);
    if (!v || n < min || n > max)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static void utc_today(char today[11], char yymm[5])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    if (strftime(today, 11, "%Y-%m-%d", &tm) != 10 || strftime(yymm, 5, "%y%m", &tm) != 4) {
        today[0] = '\0';
        memcpy(yymm, "9999", 5); /* unreachable for years 1000..9999: every card then expired */
    }
}

/* The card: DE 2, or the PAN of track 2 (DE 35) — 12..19 digits — and its masked form. */
static bool parse_pan(struct txn *t)
{
    const struct iso_msg *m = &t->req;
    char tr2[38];
    if (field_str(m, 2, 12, 19, t->pan)) {
        if (!at_is_digits(t->pan, 1, SIZE_MAX))
            return false;
    } else if (field_str(m, 35, 13, 37, tr2)) {
        size_t n = strcspn(tr2, "=D");
        if (n < 12 || n > 19)
            return false;
        memcpy(t->pan, tr2, n);
        t->pan[n] = '\0';
        if (!at_is_digits(t->pan, 1, SIZE_MAX))
            return false;
    } else {
        return false;
    }
    at_mask_pan(t->pan, strlen(t->pan), t->pan_masked);
    return true;
}

/* The original a reversal names: DE 90's acquirer, STAN and DE 7 with the reversal's DE 41, or
 * without DE 90 the reversal's own key. */
static bool original_key(struct txn *t, const char *tid)
{
    struct isonet_de90 o;
    int got = isonet_de90_get(&t->req, &o);
    if (got == 0) {
        memcpy(t->orig_key, t->key, sizeof t->orig_key);
        return true;
    }
    return got > 0 && sim_request_key(o.acquirer, 11, tid, 8, o.stan, 6, o.de7, 10, t->orig_key,
                                      sizeof t->orig_key) == 0;
}

/* The decision's view of the request (t->r). */
static void fill_decision_request(struct txn *t, int pc, const char exp[5])
{
    t->r.msg = t->mti[1] == '1' ? SIM_MSG_AUTH : SIM_MSG_FINANCIAL;
    t->r.pcode = pc;
    t->r.amount_minor = t->amount;
    t->r.currency = t->currency;
    memcpy(t->r.expiry, exp, sizeof t->r.expiry);
    t->r.pin_present = iso_has(&t->req, 52);
    t->r.pin = SIM_PIN_UNCHECKED;
    utc_today(t->r.today, t->r.now_yymm);
}

const char *txn_validate(struct txn *t)
{
    const struct iso_msg *m = &t->req;
    char acq[12], tid[9], stan[7], de7[11], ccy[4], amt[13], exp[5] = "";
    uint64_t u;
    if (!field_str(m, 3, 6, 6, t->pcode) || !at_is_digits(t->pcode, 1, SIZE_MAX) ||
        !field_str(m, 7, 10, 10, de7) || !field_str(m, 11, 6, 6, stan) ||
        !field_str(m, 32, 1, 11, acq) || !field_str(m, 41, 8, 8, tid) ||
        !field_str(m, 49, 3, 3, ccy) || !at_parse_u64(ccy, 999, &u))
        return "30";
    t->currency = (int)u;
    if (!parse_pan(t))
        return "30";
    int pc = (t->pcode[0] - '0') * 10 + (t->pcode[1] - '0');
    t->is_inquiry = sim_pcode_is_inquiry(pc);
    if (iso_has(m, 4)) {
        if (!field_str(m, 4, 12, 12, amt) || !at_parse_u64(amt, INT64_MAX, &u))
            return "30";
        t->amount = (int64_t)u;
    } else if (!t->is_inquiry) {
        return "30";
    }
    /* A converted request (docs/fx.md): the wallet moves DE 6 in DE 51, the card's billing
     * currency; DE 4 and DE 49 are the acquirer's. Both or neither; DE 51 must then be the
     * wallet's currency, as DE 49 must be without them (57 otherwise, sim_decide). */
    if (iso_has(m, 6) != iso_has(m, 51) || (iso_has(m, 6) && !iso_has(m, 4)))
        return "30";
    if (iso_has(m, 6)) {
        if (!field_str(m, 51, 3, 3, ccy) || !at_parse_u64(ccy, 999, &u) || u == 0)
            return "30";
        t->currency = (int)u;
        if (!field_str(m, 6, 12, 12, amt) || !at_parse_u64(amt, INT64_MAX, &u))
            return "30";
        t->amount = (int64_t)u;
    }
    if (iso_has(m, 14) && (!field_str(m, 14, 4, 4, exp) || !at_is_digits(exp, 1, SIZE_MAX)))
        return "30";
    if (sim_request_key(acq, strlen(acq), tid, 8, stan, 6, de7, 10, t->key, sizeof t->key) != 0)
        return "30";
    if (t->is_reversal)
        return original_key(t, tid) ? NULL : "30";
    /* An advice names the switch's stand-in approval (DE 38) and decision (DE 39). */
    if (t->is_advice &&
        (!field_str(m, 38, 1, 6, t->advice_auth) || !field_str(m, 39, 2, 2, t->advice_rc) ||
         !at_is_digits(t->advice_rc, 1, SIZE_MAX)))
        return "30";
    /* Pre-authorization: DE 90 names the pre-auth (its acquirer, STAN and DE 7 as the issuer
     * saw them, with this request's DE 41). An 0220 without DE 90 is a stand-in advice (txn.c),
     * never a completion; an 0100 with one is an incremental authorization; a completion
     * captures a debit. */
    struct isonet_de90 o;
    int de90 = isonet_de90_get(m, &o);
    if (de90 < 0)
        return "30";
    if (t->is_completion && de90 == 0)
        return "12";
    if (de90 > 0 && (t->is_completion || t->mti[1] == '1')) {
        if (!original_key(t, tid))
            return "30";
        t->is_increment = !t->is_completion;
    }
    fill_decision_request(t, pc, exp);
    if (t->is_completion && (!sim_pcode_is_debit(pc) || t->amount <= 0))
        return sim_pcode_is_debit(pc) ? "13" : "12";
    return sim_check_request(&t->r);
}
