/* issuer-sim's hsm-sim commands: the request's MAC verified (M8) and the response's computed
 * (M6) with the ZAK, and the PIN block of DE 52 verified under the ZPK against the wallet's PVV
 * (EC) or IBM 3624 offset (EA) with the PVK. Keys stay under the LMK; no PIN block is kept
 * once its command is handed to the client. */
#include "issuer_int.h"
#include "issuer_tools.h"

#include "hex.h"
#include "hsmclient.h"
#include "log.h"
#include "stream.h"

#include <string.h>

#define HSM_CMD_CAP (MAX_MSG + 256)

static char hsm_cmd[HSM_CMD_CAP]; /* one command at a time: hsm_client_submit copies it */

/* ---------------------------------------------------------------- request MAC */

static void on_req_mac(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("M8", resp, len) : -1;
    if (e == 1 && keyx_try_previous(t)) {
        /* sent under the previous ZAK while it is still accepted (a key change, docs/keys.md) */
        hsmcmd_verify_request_mac(t, &t->req_mac);
        return;
    }
    if (e == 1) {
        /* The MAC does not verify. Answered 63 (with our own MAC) so the switch learns it at
         * once; nothing else of the request is looked at or recorded. */
        at_log(AT_LOG_WARN, "mac_failure", AT_STR("mti", t->mti),
               AT_STR("peer", t->c->s ? at_stream_peer(t->c->s) : "-"));
        txn_fail(t, "63", "bad_mac");
        return;
    }
    if (e != 0) {
        at_log(AT_LOG_ERROR, "mac_verify_error", AT_INT("status", status), AT_INT("hsm_error", e));
        txn_fail(t, "96", "hsm_error");
        return;
    }
    keyx_mac_ok(t);
    txn_mac_verified(t);
}

void hsmcmd_verify_request_mac(struct txn *t, const struct isonet_mac *at)
{
    struct iss *s = t->iss;
    if (at != &t->req_mac)
        t->req_mac = *at;
    int cn =
        hsm_client_build_mac(hsm_cmd, sizeof hsm_cmd, "008", t->zak, t->msg, at->off, at->value);
    if (t->st != TXN_MAC)
        txn_set_state(t, TXN_MAC);
    if (cn < 0 || hsm_client_submit(s->hsm, hsm_cmd, (size_t)cn, on_req_mac, t) != 0)
        txn_fail(t, "96", "hsm_full");
}

/* ---------------------------------------------------------------- PIN */

static void on_pin(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    if (status != HSM_CLIENT_OK) {
        txn_fail(t, "96", "hsm_unavailable");
        return;
    }
    /* 00 right PIN; 01 wrong PIN; 20/24 the block holds no valid PIN for this card: a wrong PIN
     * too (counted, so garbage cannot be tried for free); anything else is our fault (keys). */
    int e =
        hsm_client_resp_error(t->wallet.pin_method == DB_WALLET_PIN_PVV ? "EC" : "EA", resp, len);
    if (e == 0)
        t->r.pin = SIM_PIN_OK;
    else if (e == 1 || e == 20 || e == 24)
        t->r.pin = SIM_PIN_BAD;
    else {
        at_log(AT_LOG_ERROR, "pin_verify_error", AT_INT("hsm_error", e));
        txn_fail(t, "96", "hsm_error");
        return;
    }
    txn_decide(t);
}

/* The verification command for PIN block blkhex (16 hex) of account acct (12 digits) against
 * the wallet's PVV or IBM offset, into hsm_cmd. Returns its length or -1. */
static int pin_command(const struct iss *s, const struct txn *t, const struct db_wallet_row *w,
                       const char *blkhex, const char acct[13])
{
    if (w->pin_method == DB_WALLET_PIN_PVV)
        return hsm_client_build_pvv_verify(hsm_cmd, sizeof hsm_cmd, true, t->zpk, s->pvk, blkhex,
                                           "01", acct, (unsigned)w->pvki, w->pvv);
    char vdata[13];
    memcpy(vdata, acct, 11);
    vdata[11] = 'N';
    vdata[12] = '\0';
    return hsm_client_build_ibm_verify(hsm_cmd, sizeof hsm_cmd, true, t->zpk, s->pvk, blkhex, "01",
                                       (unsigned)strlen(w->pin_offset), acct, SIM_IBM_DECTAB, vdata,
                                       w->pin_offset);
}

void hsmcmd_verify_pin(struct txn *t)
{
    struct iss *s = t->iss;
    if (s->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    size_t bl;
    const uint8_t *blk = iso_get(&t->req, 52, &bl);
    char blkhex[17], acct[13];
    if (!blk || bl != 8 || hsm_client_account12(t->pan, acct) != 0) {
        txn_fail(t, "30", "format");
        return;
    }
    at_hex_encode(blk, 8, blkhex);
    int n = pin_command(s, t, &t->wallet, blkhex, acct);
    memset(blkhex, 0, sizeof blkhex);
    if (n < 0) {
        at_log(AT_LOG_ERROR, "pin_command_failed", AT_STR("pan", t->pan_masked));
        txn_fail(t, "96", "pin_data");
        return;
    }
    txn_set_state(t, TXN_PIN);
    int rc = hsm_client_submit(s->hsm, hsm_cmd, (size_t)n, on_pin, t);
    memset(hsm_cmd, 0, (size_t)n);
    if (rc != 0)
        txn_fail(t, "96", "hsm_full");
}

/* ---------------------------------------------------------------- response MAC */

static void on_resp_mac(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    uint8_t mac[ISONET_MAC_LEN];
    if (status != HSM_CLIENT_OK || hsm_client_parse_mac8(resp, len, mac) != 0) {
        at_log(AT_LOG_ERROR, "resp_mac_failed", AT_INT("status", status),
               AT_INT("hsm_error",
                      status == HSM_CLIENT_OK ? hsm_client_resp_error("M6", resp, len) : -1));
        strcpy(t->outcome, "no_mac");
        txn_finish(t); /* no answer without a MAC: the switch times out and reverses */
        return;
    }
    isonet_mac_patch(t->resp, &t->resp_mac, mac);
    txn_send(t);
}

void hsmcmd_mac_response(struct txn *t)
{
    struct iss *s = t->iss;
    int n = hsm_client_build_mac(hsm_cmd, sizeof hsm_cmd, "008", t->zak, t->resp, t->resp_mac.off,
                                 NULL);
    txn_set_state(t, TXN_RESP_MAC);
    if (n < 0 || hsm_client_submit(s->hsm, hsm_cmd, (size_t)n, on_resp_mac, t) != 0) {
        strcpy(t->outcome, "hsm_full");
        txn_finish(t);
    }
}
