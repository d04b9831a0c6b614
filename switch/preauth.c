/* Pre-authorization completions (0220/0221 with DE 90) and incremental authorizations (0100/0101
 * with DE 90) in switchd. The pre-auth DE 90 names — by the terminal's identity of it (DE 11 and
 * DE 7 of the 0100, the same acquirer and DE 41 as this request) — is found as a reversal's
 * original is: the recent cache, else the journal (class 010). The issuer knows it by what the
 * switch sent it (its own STAN and DE 7), so the request leaves with DE 90 rewritten to that.
 * Everything else — identity and duplicates, write-ahead, journal, reversal on timeout or on an
 * answer that cannot be delivered, recovery, spool — is txn.c's financial (0220) or
 * authorization (0100) path: the issuer's answer alone says whether money moved. */
#include "preauth.h"

#include "db.h"
#include "fmt.h"
#include "log.h"
#include "switchd.h"
#include "xfer.h" /* sw_txn_reject */

#include <openssl/crypto.h>
#include <string.h>

/* What the pre-auth must be, from what is known of it: approved by its issuer (the one t is
 * routed to), not reversed, of the same card. Then t's DE 90 for the issuer is set and the
 * request goes on; else t is answered here. */
static void use_original(struct sw_txn *t, bool approved, bool forwarded, bool reversed,
                         const char *issuer_id, const char *issuer_stan, const char *issuer_de7,
                         const char *proc, const uint8_t *pan_tag, size_t tag_len)
{
    size_t n;
    const uint8_t *p3 = iso_get(&t->req, 3, &n);
    if (tag_len > 0 && (!sw_txn_pan_hmac(t) || CRYPTO_memcmp(pan_tag, t->pan_hmac, tag_len) != 0)) {
        sw_txn_reject(t, "12", SW_OUT_REJECTED, "DE 90 names a pre-authorization of another card",
                      2);
        return;
    }
    if (approved && (!p3 || n < 2 || memcmp(p3, proc, 2) != 0)) {
        sw_txn_reject(t, "12", SW_OUT_REJECTED,
                      "processing code differs from the pre-authorization's", 3);
        return;
    }
    if (!approved || !forwarded || strlen(issuer_stan) != 6 || strlen(issuer_de7) != 10) {
        sw_txn_reject(t, "25", SW_OUT_REJECTED, "no approved pre-authorization of that identity",
                      90);
        return;
    }
    if (reversed) {
        sw_txn_reject(t, "12", SW_OUT_REJECTED, "the pre-authorization was reversed", 90);
        return;
    }
    if (strcmp(issuer_id, t->issuer.id) != 0) {
        sw_txn_reject(t, "12", SW_OUT_REJECTED, "the pre-authorization is another issuer's", 90);
        return;
    }
    isonet_de90_make(&t->issuer_de90, "0100", issuer_stan, issuer_de7, t->acquirer);
    t->has_issuer_de90 = true;
    sw_txn_after_original(t);
}

static void on_lookup(void *arg, const struct db_error *err, const struct db_original *d,
                      bool in_flight)
{
    struct sw_txn *t = arg;
    (void)in_flight;
    if (err->code != 0) {
        sw_txn_reject(t, "96", SW_OUT_ERROR, "journal lookup of the pre-authorization failed", 90);
        return;
    }
    if (!d) {
        sw_txn_reject(t, "25", SW_OUT_REJECTED, "no pre-authorization of that identity", 90);
        return;
    }
    use_original(t, strcmp(d->response_code, "00") == 0, d->issuer_stan[0] != '\0', d->reversed,
                 d->issuer_id, d->issuer_stan, d->issuer_transmission_time, d->processing_code,
                 d->pan_hmac, d->has_pan_hmac ? 8 : 0);
}

void sw_preauth_resolve(struct sw_txn *t)
{
    struct isonet_de90 de90;
    size_t n;
    const uint8_t *tid = iso_get(&t->req, 41, &n);
    if (isonet_de90_get(&t->req, &de90) <= 0 || !tid || n != 8) { /* validated before */
        sw_txn_reject(t, "30", SW_OUT_REJECTED, "DE 90 missing or malformed", 90);
        return;
    }
    memcpy(t->orig_stan, de90.stan, 7); /* journaled with the request (original_stan/_time) */
    memcpy(t->orig_de7, de90.de7, 11);

    struct sw_req_id id;
    memset(&id, 0, sizeof id);
    at_strlcpy(id.acquirer, t->acquirer, sizeof id.acquirer);
    memcpy(id.terminal, tid, 8);
    memcpy(id.stan, de90.stan, 6);
    memcpy(id.tx_time, de90.de7, 10);
    id.mclass = '1';
    const struct sw_recent_txn *o = sw_recent_find(t->srv->recent, &id, sw_now_ms());
    if (o) {
        static const uint8_t no_tag[8];
        char stan[7], de7[11];
        if (o->state == SW_RECENT_IN_FLIGHT) {
            sw_txn_reject(t, "96", SW_OUT_ERROR, "the pre-authorization is still in flight", 90);
            return;
        }
        memcpy(stan, o->issuer_stan, 6);
        stan[6] = '\0';
        memcpy(de7, o->issuer_tx_time, 10);
        de7[10] = '\0';
        char proc[7];
        memcpy(proc, o->proc_code, 6);
        proc[6] = '\0';
        use_original(t, o->approved, o->forwarded, o->state == SW_RECENT_REVERSED, o->issuer_id,
                     stan, de7, proc, o->pan_tag, memcmp(o->pan_tag, no_tag, 8) != 0 ? 8 : 0);
        return;
    }
    /* Not in memory (a restart, or older than the window): the journal has every answer. */
    struct db_request_id did;
    memset(&did, 0, sizeof did);
    db_request_date(de90.de7, t->t_wall_us, did.request_date);
    at_strlcpy(did.acquirer_id, t->acquirer, sizeof did.acquirer_id);
    memcpy(did.terminal_id, tid, 8);
    memcpy(did.stan, de90.stan, 7);
    memcpy(did.transmission_time, de90.de7, 11);
    memcpy(did.mti, "0100", 5);
    sw_txn_to_orig_lookup(t);
    if (db_original_lookup(t->srv->db, &did, "010", on_lookup, t) != 0)
        sw_txn_reject(t, "96", SW_OUT_ERROR, "database queue full", 90);
}
