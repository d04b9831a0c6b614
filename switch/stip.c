/* Stand-in processing (stip.h; docs/switchd.md "Stand-in"). One decision, in order:
 *
 *   rules + negative file + PIN data + is the identity taken (one SELECT) → processing code
 *   allowed? → negative file → per-transaction maximum → PIN (EC/EA under the ZPK, or DC/DA
 *   under the TPK, when the rules say so and the switch holds the issuer's PVK) → day total
 *   reserved (switch.stand_in_reserve, under a per-card lock) → advice stored
 *   (sw_advice_store) → approved, DE 38 "S" + 5 digits. A taken identity (a repeat, a copy)
 *   goes down txn.c's duplicate path instead: never two decisions for one request.
 *
 * Any step that cannot be done (PostgreSQL down, HSM down, the advice not durable) answers 91,
 * as switchd did before stand-in. A decline is journaled (marked stand_in) and sends nothing to
 * the issuer. The advice is durable before the terminal hears the approval, and the approval's
 * journal row is committed before it too (finish()); a crash between the two leaves an advice
 * whose approval the journal does not hold, which recovery reverses (switch.recover_advices,
 * advice.c) — the write-ahead for stand-in is the advice row itself. */
#include "stip.h"

#include "advice.h"
#include "bizday.h"
#include "clock.h"
#include "db_stip.h"
#include "fmt.h"
#include "hex.h"
#include "hsmclient.h"
#include "log.h"
#include "parse.h"
#include "switchd.h"
#include "xfer.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const why_names[] = { "link_down", "timeout", "link_lost" };
static const char *const result_names[SW_STIP_max] = { "approved", "declined", "unavailable" };

/* What a decision carries between its asynchronous steps. */
struct stip_ctx {
    struct sw_txn *t;
    enum sw_stip_why why;
    int64_t amount;   /* billing currency: DE 6 when converted, else DE 4 */
    int32_t currency; /* DE 51 when converted, else DE 49 */
    int64_t max_daily;
    bool pin_zone;       /* PIN block under the issuer's ZPK (EC/EA), else the TPK (DC/DA) */
    const char *pin_cmd; /* the verification command sent: EC, DC (PVV), EA, DA (IBM 3624) */
    uint32_t fwd_stan;   /* what was forwarded before a timeout (0: nothing), restored when no */
    char fwd_de7[11];    /* advice is stored: the journal row then names the forwarded request */
};

bool sw_stip_eligible(const struct sw_txn *t)
{
    const struct sw_server *srv = t->srv;
    if (srv->stopping || !t->term || t->leg_of || t->xfer || t->v.kind == SW_KIND_REVERSAL)
        return false;
    if (t->v.kind != SW_KIND_AUTH && t->v.kind != SW_KIND_FINANCIAL)
        return false;
    if (t->req.mti[2] != '0' || (t->req.mti[3] != '0' && t->req.mti[3] != '1'))
        return false;
    if (t->v.proc == SW_PROC_TRANSFER || t->v.proc == SW_PROC_BALANCE ||
        t->v.proc == SW_PROC_BALANCE2 || t->v.proc < 0)
        return false;
    /* A request naming a pre-authorization (an increment, a completion) is not eligible
     * either: only its issuer can settle the hold. */
    if (t->v.names_original)
        return false;
    if (t->issuer.link < 0 || (size_t)t->issuer.link >= srv->n_links || !t->v.pan)
        return false;
    return srv->links[t->issuer.link].conf->stand_in;
}

const struct timeval *sw_stip_timeout(const struct sw_txn *t, struct timeval *buf)
{
    const struct sw_issuer_conf *c = t->link->conf;
    uint64_t ms = 0;
    if (t->v.proc == SW_PROC_CASH)
        ms = c->timeout_ms_cash;
    if (ms == 0)
        ms = t->req.mti[1] == '1' ? c->timeout_ms_0100 : c->timeout_ms_0200;
    if (ms == 0)
        return t->link->common_timeout;
    buf->tv_sec = (time_t)(ms / 1000);
    buf->tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return buf;
}

static void count(struct sw_server *srv, const char *issuer, enum sw_stand_in_result res)
{
    struct sw_metrics *m = &srv->metrics;
    for (size_t i = 0; i < m->n_stand_in; i++)
        if (strcmp(m->stand_in[i].issuer, issuer) == 0) {
            m->stand_in[i].n[res]++;
            return;
        }
    if (m->n_stand_in == SW_METRICS_MAX_STAND_IN)
        return;
    struct sw_stand_in_count *c = &m->stand_in[m->n_stand_in++];
    memset(c, 0, sizeof *c);
    at_strlcpy(c->issuer, issuer, sizeof c->issuer);
    c->n[res]++;
}

void sw_stip_metrics_render(const struct sw_server *srv, struct evbuffer *out)
{
    const struct sw_metrics *m = &srv->metrics;
    evbuffer_add_printf(out, "# HELP atlas_stand_in_total Requests decided in stand-in, by"
                             " issuer and result (unavailable: stand-in could not decide, 91).\n"
                             "# TYPE atlas_stand_in_total counter\n");
    for (size_t i = 0; i < m->n_stand_in; i++)
        for (int r = 0; r < SW_STIP_max; r++)
            evbuffer_add_printf(out, "atlas_stand_in_total{issuer=\"%s\",result=\"%s\"} %llu\n",
                                m->stand_in[i].issuer, result_names[r],
                                (unsigned long long)m->stand_in[i].n[r]);
}

static void log_decision(struct sw_txn *t, enum sw_stip_why why, const char *reason)
{
    char stan[7], tid[9];
    sw_txn_field(t, 11, stan, sizeof stan);
    sw_txn_field(t, 41, tid, sizeof tid);
    at_log(AT_LOG_INFO, "stand_in", AT_STR("issuer", t->issuer.id), AT_STR("why", why_names[why]),
           AT_STRN("mti", t->req.mti, 4), AT_STR("terminal", tid), AT_STR("stan", stan),
           AT_STR("rc", t->rc), AT_STR("auth_code", t->auth_code), AT_STR("reason", reason));
}

/* Stand-in could not decide (its rules unreadable, PostgreSQL or the HSM down, the advice not
 * durable): 91, as without stand-in. The journal row is not marked: nothing was decided. */
static void unavailable(struct stip_ctx *x, const char *reason)
{
    struct sw_txn *t = x->t;
    enum sw_stip_why why = x->why;
    free(x);
    t->stand_in = false;
    t->auth_code[0] = '\0';
    memcpy(t->rc, "91", 3);
    count(t->srv, t->issuer.id, SW_STIP_UNAVAILABLE);
    log_decision(t, why, reason);
    sw_txn_reject(t, "91", why == SW_STIP_TIMEOUT ? SW_OUT_TIMEOUT : SW_OUT_UNAVAILABLE, reason, 0);
}

/* The rules say no: rc, journaled as a stand-in decision; nothing goes to the issuer. */
static void decline(struct stip_ctx *x, const char *rc, const char *reason, int field)
{
    struct sw_txn *t = x->t;
    enum sw_stip_why why = x->why;
    free(x);
    memcpy(t->rc, rc, 2);
    t->rc[2] = '\0';
    t->auth_code[0] = '\0';
    count(t->srv, t->issuer.id, SW_STIP_DECLINED);
    log_decision(t, why, reason);
    sw_txn_reject(t, rc, SW_OUT_DECLINED, reason, field);
}

/* The negative file's status → DE 39. */
static const char *negative_rc(const char *status)
{
    static const struct {
        const char *status, *rc;
    } map[] = { { "lost", "41" },    { "stolen", "43" }, { "blocked", "62" },
                { "expired", "54" }, { "closed", "62" }, { "fraud", "59" } };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(status, map[i].status) == 0)
            return map[i].rc;
    return "62";
}

/* sw_advice_store's answer: only a durable advice makes an approval. */
static void on_advice(struct sw_txn *t, bool durable)
{
    struct stip_ctx *x = t->stip;
    t->stip = NULL;
    if (!durable) {
        struct db_request_id id;
        sw_txn_request_id(t, &id);
        db_stip_void(t->srv->db, &id);
        t->issuer_stan = x->fwd_stan;
        memcpy(t->issuer_de7, x->fwd_de7, sizeof t->issuer_de7);
        unavailable(x, "the advice could not be stored");
        return;
    }
    enum sw_stip_why why = x->why;
    free(x);
    t->outcome = SW_OUT_APPROVED;
    count(t->srv, t->issuer.id, SW_STIP_APPROVED);
    log_decision(t, why, "approved");
    sw_txn_finish(t);
}

/* The day total is reserved: the approval is stored as an advice (advice.c chooses its issuer
 * STAN and DE 7, and sets them in t), and answered once that is durable. */
static void approve(struct stip_ctx *x)
{
    struct sw_txn *t = x->t;
    static unsigned seq;
    if (!seq)
        seq = (unsigned)(at_wall_us() / 1000 % 100000);
    seq = seq % 99999 + 1;
    /* "S" + 5 digits: a per-process sequence; nothing keys on it (the advice is found by its
     * issuer STAN and DE 7, the journal row by the request's identity). */
    snprintf(t->auth_code, sizeof t->auth_code, "S%05u", seq);
    memcpy(t->rc, "00", 3); /* advice.c sends DE 38 and DE 39 as set here */
    x->fwd_stan = t->forwarded ? t->issuer_stan : 0;
    memcpy(x->fwd_de7, t->issuer_de7, sizeof x->fwd_de7);
    t->stip = x;
    sw_advice_store(t, on_advice);
}

/* The identity is taken: not a decision but a repeat (or a copy), answered as switchd answers
 * them — from the journal (the original's code and DE 38), or 94 while the original is in
 * flight. Never a second approval. */
static void repeat_of_taken(struct stip_ctx *x)
{
    struct sw_txn *t = x->t;
    free(x);
    t->stand_in = false;
    t->auth_code[0] = '\0';
    sw_txn_dup_lookup(t);
}

static void on_reserve(void *arg, const struct db_error *err, bool ok, bool duplicate,
                       int64_t day_total)
{
    struct stip_ctx *x = arg;
    (void)day_total;
    if (err->code != 0) {
        unavailable(x, "the card's day total could not be reserved");
        return;
    }
    if (duplicate) {
        repeat_of_taken(x);
        return;
    }
    if (!ok) {
        decline(x, "61", "over the per-card daily maximum", 4);
        return;
    }
    approve(x);
}

static void reserve(struct stip_ctx *x)
{
    struct sw_txn *t = x->t;
    struct db_stip_reservation r;
    memset(&r, 0, sizeof r);
    sw_txn_request_id(t, &r.id);
    at_strlcpy(r.issuer_id, t->issuer.id, sizeof r.issuer_id);
    memcpy(r.pan_hmac, t->pan_hmac, 32);
    int64_t y;
    unsigned mo, d;
    at_civil_from_days(at_business_day((int64_t)t->t_wall_us, t->srv->conf.cutover_min), &y, &mo,
                       &d);
    at_put_date(r.business_day, y, mo, d);
    r.amount_minor = x->amount;
    r.currency = x->currency;
    r.max_daily_minor = x->max_daily;
    if (db_stip_reserve(t->srv->db, &r, on_reserve, x) != 0)
        unavailable(x, "database queue full");
}

static void on_pin_verify(void *arg, int status, const char *resp, size_t len)
{
    struct stip_ctx *x = arg;
    if (status != HSM_CLIENT_OK) {
        unavailable(x, "HSM unavailable for the stand-in PIN verification");
        return;
    }
    int e = hsm_client_resp_error(x->pin_cmd, resp, len);
    if (e == 1) {
        decline(x, "55", "PIN wrong", 52);
        return;
    }
    if (e != 0) {
        unavailable(x, "the HSM refused the stand-in PIN verification");
        return;
    }
    reserve(x);
}

/* The PIN block as the switch holds it: translated under the issuer's ZPK (the request had gone
 * to the issuer), or as the terminal sent it under its TPK. DUKPT terminals' blocks are only
 * verifiable once translated. Verified against the card's published PVV (EC/DC), or its IBM 3624
 * offset and validation data with the issuer's decimalization table (EA/DA). */
static void verify_pin(struct stip_ctx *x, const struct db_stip_rules *r)
{
    struct sw_txn *t = x->t;
    char cmd[512], pan[20], acct[13], blk[17];
    size_t n;
    const uint8_t *p = iso_get(&t->req, 52, &n);
    memcpy(pan, t->v.pan, t->v.pan_len);
    pan[t->v.pan_len] = '\0';
    if (hsm_client_account12(pan, acct) != 0) {
        OPENSSL_cleanse(pan, sizeof pan);
        decline(x, "14", "PAN too short for a PIN block", 2);
        return;
    }
    OPENSSL_cleanse(pan, sizeof pan);
    const char *key;
    if (t->has_pin_block) {
        x->pin_zone = true;
        key = t->issuer.zpk;
        at_hex_encode(t->pin_block, 8, blk);
    } else if (t->terminal.scheme == SW_TERM_TPK && t->terminal.tpk[0] && p && n == 8) {
        x->pin_zone = false;
        key = t->terminal.tpk;
        at_hex_encode(p, 8, blk);
    } else {
        unavailable(x, "the PIN cannot be verified in stand-in (DUKPT terminal, not translated)");
        return;
    }
    int len;
    if (r->has_pvv) {
        x->pin_cmd = x->pin_zone ? "EC" : "DC";
        len = hsm_client_build_pvv_verify(cmd, sizeof cmd, x->pin_zone, key, r->pvk, blk, "01",
                                          acct, r->pvki, r->pvv);
    } else {
        /* Validation data: the account number's first 11 digits and N (the PAN insertion
         * point), the convention of issuer-sim's seeding (docs/switchd.md, "Stand-in"). */
        char vdata[13];
        memcpy(vdata, acct, 11);
        vdata[11] = 'N';
        vdata[12] = '\0';
        x->pin_cmd = x->pin_zone ? "EA" : "DA";
        len = hsm_client_build_ibm_verify(cmd, sizeof cmd, x->pin_zone, key, r->pvk, blk, "01",
                                          (unsigned)strlen(r->pin_offset), acct, r->dectab, vdata,
                                          r->pin_offset);
        OPENSSL_cleanse(vdata, sizeof vdata);
    }
    OPENSSL_cleanse(blk, sizeof blk);
    OPENSSL_cleanse(acct, sizeof acct);
    int rc = len > 0 ? hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_pin_verify, x) : -1;
    OPENSSL_cleanse(cmd, sizeof cmd);
    if (rc != 0)
        unavailable(x, len > 0 ? "HSM queue full" : "cannot build the PIN verification");
}

static void on_rules(void *arg, const struct db_error *err, const struct db_stip_rules *r)
{
    struct stip_ctx *x = arg;
    struct sw_txn *t = x->t;
    if (err->code != 0) {
        unavailable(x, "stand-in rules unreadable");
        return;
    }
    if (!r->found) {
        unavailable(x, "no stand-in rules for the issuer");
        return;
    }
    /* With the link down nothing was written ahead: the journal and switch.inflight are the
     * durable duplicate check (after a restart the duplicate table is empty). After a timeout
     * the write-ahead row made it, and the row found would be this request's own. */
    if (x->why == SW_STIP_LINK_DOWN && r->taken) {
        repeat_of_taken(x);
        return;
    }
    char pcode[3];
    at_put_digits(pcode, 2, (uint64_t)t->v.proc); /* eligible: 0..99 */
    bool allowed = false;
    for (unsigned i = 0; i < r->n_pcodes && !allowed; i++)
        allowed = memcmp(r->pcodes[i], pcode, 2) == 0;
    if (!allowed) {
        decline(x, "91", "processing code not allowed in stand-in", 3);
        return;
    }
    if (r->negative[0]) {
        decline(x, negative_rc(r->negative), "card in the negative file", 2);
        return;
    }
    if (x->amount < 0 || x->amount > r->max_amount_minor) {
        decline(x, "61", "over the per-transaction maximum", 4);
        return;
    }
    x->max_daily = r->max_daily_minor;
    if (r->verify_pin && t->v.has_pin) {
        if (!r->pvk[0] || !(r->has_pvv || (r->has_offset && r->dectab[0]))) {
            decline(x, "91",
                    !r->pvk[0] ? "the switch holds no PVK of the issuer"
                               : "no PIN verification data published for the card",
                    52);
            return;
        }
        verify_pin(x, r);
        return;
    }
    reserve(x);
}

void sw_stip_decide(struct sw_txn *t, enum sw_stip_why why)
{
    struct sw_server *srv = t->srv;
    sw_txn_to_stand_in(t);
    t->stand_in = true;
    if (why == SW_STIP_LINK_DOWN)
        t->outcome = SW_OUT_UNAVAILABLE;
    t->link = &srv->links[t->issuer.link];
    struct stip_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        t->stand_in = false;
        sw_txn_reject(t, "91", SW_OUT_UNAVAILABLE, "out of memory", 0);
        return;
    }
    x->t = t;
    x->why = why;
    if (db_billing_converted(&t->billing)) {
        x->amount = t->billing.amount_minor;
        x->currency = t->billing.currency;
    } else {
        x->amount = sw_txn_amount(t, 4, INT64_MAX);
        x->currency = (int32_t)sw_txn_amount(t, 49, 999);
    }
    if (!t->has_pan_hmac)
        t->has_pan_hmac = db_pan_hasher_mac(srv->pan_hasher, (const char *)t->v.pan, t->v.pan_len,
                                            t->pan_hmac) == 0;
    if (!t->has_pan_hmac) {
        unavailable(x, "the PAN cannot be hashed");
        return;
    }
    struct db_request_id id;
    sw_txn_request_id(t, &id);
    if (db_stip_rules(srv->db, t->issuer.id, t->pan_hmac, &id, on_rules, x) != 0)
        unavailable(x, "database queue full");
}
