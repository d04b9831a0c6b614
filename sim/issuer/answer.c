/* issuer-sim's answers: the response message built from the request (echoed fields, DE 39, DE
 * 38 and DE 54 when they apply, the MAC field last), packed in the link's dialect, MACed by
 * hsmcmd.c and sent on the request's link — or, for network management, sent without a MAC. */
#include "issuer_int.h"

#include "log.h"

#include <string.h>

/* Fields a response echoes from its request. */
static const int echo[] = { 2, 3, 4, 6, 7, 10, 11, 32, 37, 41, 49, 51, 70, 90 };

/* Builds and packs the response into t->resp, with its MAC field reserved when mac is set
 * (where it sits in t->resp_mac). Returns 0, or -1 after logging why (the request is not
 * answered). */
static int build_response(struct txn *t, bool mac)
{
    struct iso_msg m;
    struct iso_err ie = { 0 };
    char mti[5];
    iso_msg_init(&m, NULL, 0);
    isonet_response_mti(t->mti, mti);
    int rc = iso_set_mti(&m, mti);
    for (size_t i = 0; rc == 0 && i < sizeof echo / sizeof echo[0]; i++) {
        size_t n;
        const uint8_t *v = iso_get(&t->req, echo[i], &n);
        if (v)
            rc = iso_set(&m, echo[i], v, n);
    }
    if (rc == 0)
        rc = iso_set(&m, 39, t->rc, 2);
    if (rc == 0 && strcmp(t->rc, "00") == 0 && t->auth[0])
        rc = iso_set(&m, 38, t->auth, strlen(t->auth));
    if (rc == 0 && t->de54[0])
        rc = iso_set(&m, 54, t->de54, 40);
    if (rc == 0 && t->resp44[0]) /* a key change refused: why (keyx.c) */
        rc = iso_set(&m, 44, t->resp44, strlen(t->resp44));
    if (rc == 0 && t->resp48[0]) /* a key change applied: the KCVs (keyx.c) */
        rc = iso_set(&m, 48, t->resp48, strlen(t->resp48));
    if (rc == 0)
        rc = mac ? isonet_pack_mac(t->iss->dialect, &m, t->resp, sizeof t->resp, &t->resp_len,
                                   &t->resp_mac, &ie)
                 : iso_pack(t->iss->dialect, &m, t->resp, sizeof t->resp, &t->resp_len, &ie);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "pack_failed", AT_STR("mti", mti), AT_INT("field", ie.field),
               AT_STR("reason", ie.reason));
        return -1;
    }
    return 0;
}

void txn_respond(struct txn *t, bool mac)
{
    if (t->iss->closing) {
        strcpy(t->outcome, "shutdown");
        txn_finish(t);
        return;
    }
    if (build_response(t, mac) != 0) {
        strcpy(t->outcome, "pack_failed");
        txn_finish(t);
        return;
    }
    if (!mac) {
        txn_send(t);
        return;
    }
    hsmcmd_mac_response(t);
}

void txn_answer(struct txn *t)
{
    int ccy = t->have_wallet ? t->w.currency : t->currency;
    t->de54[0] = '\0';
    if (t->has_bal && strcmp(t->rc, "00") == 0 && ccy > 0 &&
        sim_format_de54(ccy, t->bal, t->avail, t->de54) != 0)
        t->de54[0] = '\0';
    txn_respond(t, true);
}

/* Sends the packed response (MAC in place) with its frame header; drops it if the link is gone. */
void txn_send(struct txn *t)
{
    if (!t->c->s)
        strcpy(t->outcome, "link_gone");
    else if (link_write(t->c, t->resp, t->resp_len) != 0)
        strcpy(t->outcome, "send_failed");
    txn_finish(t);
}
