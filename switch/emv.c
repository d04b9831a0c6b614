/* Card authentication on the issuer's behalf (docs/emv.md). A chip request (DE 22 05x/07x with
 * DE 55) has its ARQC verified through KQ with the route's IMK-AC — Visa CVN 10 (the ICC master
 * key, zero padding, the CVR) or CVN 18 (the EMV common session key from the ATC, 80 padding,
 * the whole IAD) — and gets an ARPC (method 1, ARC = DE 39) in its answer's DE 55 tag 91; a
 * request with a CVV2 (DE 126 tag C2) has it verified through CY with the route's CVK. Failures
 * are the switch's own declines (82, N7): the issuer never sees the request. */
#include "emv.h"

#include "switchd.h"
#include "xfer.h"

#include "hex.h"
#include "hsmclient.h"
#include "log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#define TLV_MAX  48
#define DATA_MAX 128 /* the ARQC input: 43 bytes of tags ‖ the CVR or an IAD of at most 32 */

/* The tags the ARQC input is made of, in order, with the length each must have. */
static const struct {
    uint32_t tag;
    size_t len;
} arqc_tags[] = {
    { 0x9F02, 6 }, { 0x9F03, 6 }, { 0x9F1A, 2 }, { 0x95, 5 }, { 0x5F2A, 2 },
    { 0x9A, 3 },   { 0x9C, 1 },   { 0x9F37, 4 }, { 0x82, 2 }, { 0x9F36, 2 },
};

static void field_text(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    if (!p || n >= cap)
        n = 0;
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
}

/* DE 126 as elements of tag (2 characters) ‖ length (2 digits) ‖ value. Finds tag's value:
 * 1 found, 0 absent, -1 DE 126 malformed. */
static int de126_find(const uint8_t *p, size_t n, const char tag[2], const uint8_t **val,
                      size_t *vlen)
{
    size_t at = 0;
    int found = 0;
    while (at < n) {
        if (n - at < 4 || p[at + 2] < '0' || p[at + 2] > '9' || p[at + 3] < '0' || p[at + 3] > '9')
            return -1;
        size_t l = (size_t)(p[at + 2] - '0') * 10 + (size_t)(p[at + 3] - '0');
        if (n - at - 4 < l)
            return -1;
        if (!found && p[at] == (uint8_t)tag[0] && p[at + 1] == (uint8_t)tag[1]) {
            *val = p + at + 4;
            *vlen = l;
            found = 1;
        }
        at += 4 + l;
    }
    return found;
}

static bool chip_entry(const struct iso_msg *m)
{
    char de22[4];
    field_text(m, 22, de22, sizeof de22);
    return de22[0] == '0' && (de22[1] == '5' || de22[1] == '7');
}

bool sw_card_auth_wanted(const struct sw_txn *t)
{
    if (t->v.kind != SW_KIND_AUTH && t->v.kind != SW_KIND_FINANCIAL)
        return false;
    /* a transfer's legs, a pre-auth's completion or increment (DE 90: the card was
     * authenticated with the pre-auth) are not authenticated again */
    if (t->v.proc == SW_PROC_TRANSFER || t->v.names_original)
        return false;
    return chip_entry(&t->req) || iso_has(&t->req, 55) || iso_has(&t->req, 126);
}

static void refuse(struct sw_txn *t, const char *rc, int outcome, const char *reason, int field)
{
    if (t->card.repeat) {
        /* a repeat keeps its original's answer: only the ARPC is lost */
        at_log(AT_LOG_INFO, "card_auth_repeat", AT_STR("result", "no_arpc"),
               AT_STR("reason", reason));
        sw_txn_finish(t);
        return;
    }
    sw_txn_reject(t, rc, outcome, reason, field);
}

static void pan_text(const struct sw_txn *t, char pan[20])
{
    memcpy(pan, t->v.pan, t->v.pan_len);
    pan[t->v.pan_len] = '\0';
}

/* ---------------------------------------------------------------- CVV2 (CY) */

static void on_cy(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    if (status != HSM_CLIENT_OK) {
        refuse(t, "96", SW_OUT_ERROR, "HSM unavailable for CVV2 verification", 126);
        return;
    }
    int e = hsm_client_resp_error("CY", resp, len);
    at_log(AT_LOG_INFO, "card_auth", AT_STR("method", "cvv2"),
           AT_STR("result", e == 0   ? "ok"
                            : e == 1 ? "bad"
                                     : "error"),
           AT_INT("hsm_error", e));
    if (e == 1) {
        refuse(t, "N7", SW_OUT_DECLINED, "CVV2 verification failed", 126);
        return;
    }
    if (e != 0) {
        refuse(t, "96", SW_OUT_ERROR, "HSM refused the CVV2 verification", 126);
        return;
    }
    t->card.cvv2_ok = true;
    sw_txn_card_checked(t);
}

static void verify_cvv2(struct sw_txn *t)
{
    char cmd[256], pan[20], exp[8];
    size_t n = 0, vlen = 0;
    const uint8_t *p = iso_get(&t->req, 126, &n), *val = NULL;
    if (de126_find(p, n, "C2", &val, &vlen) != 1 || vlen != 3) {
        refuse(t, "30", SW_OUT_REJECTED, "DE 126 tag C2 (CVV2) is not 3 digits", 126);
        return;
    }
    if (!t->card.cvk[0]) {
        refuse(t, "57", SW_OUT_DECLINED, "no CVK for the card's BIN route", 126);
        return;
    }
    field_text(&t->req, 14, exp, sizeof exp);
    if (strlen(exp) != 4) {
        refuse(t, "30", SW_OUT_REJECTED, "a CVV2 needs the expiry date (DE 14)", 14);
        return;
    }
    char cvv[4];
    memcpy(cvv, val, 3);
    cvv[3] = '\0';
    pan_text(t, pan);
    int len = hsm_client_build_cy(cmd, sizeof cmd, t->card.cvk, cvv, pan, exp, "000");
    int rc = len > 0 ? hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_cy, t) : -2;
    /* the CVV2 lives only in the request (wiped with its slot) and the HSM client's copy */
    OPENSSL_cleanse(cvv, sizeof cvv);
    OPENSSL_cleanse(cmd, sizeof cmd);
    if (rc == -2)
        refuse(t, "30", SW_OUT_REJECTED, "DE 126 tag C2 (CVV2) is not 3 digits", 126);
    else if (rc != 0)
        refuse(t, "96", SW_OUT_ERROR, "HSM queue full", 0);
}

/* ---------------------------------------------------------------- ARQC (KQ) */

static void after_arqc(struct sw_txn *t)
{
    if (t->card.repeat) {
        sw_txn_finish(t); /* the stored answer, with the ARPC made for its code */
        return;
    }
    if (t->card.cvv2)
        verify_cvv2(t);
    else
        sw_txn_card_checked(t);
}

static void on_kq_verify(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    if (status != HSM_CLIENT_OK) {
        refuse(t, "96", SW_OUT_ERROR, "HSM unavailable for ARQC verification", 55);
        return;
    }
    int e = hsm_client_resp_error("KQ", resp, len);
    at_log(AT_LOG_INFO, "card_auth", AT_STR("method", "arqc"), AT_UINT("cvn", t->card.cvn),
           AT_STR("result", e == 0   ? "ok"
                            : e == 1 ? "bad"
                                     : "error"),
           AT_INT("hsm_error", e));
    if (e == 1) {
        refuse(t, "82", SW_OUT_DECLINED, "ARQC verification failed", 55);
        return;
    }
    if (e != 0) {
        refuse(t, "96", SW_OUT_ERROR, "HSM refused the ARQC verification", 55);
        return;
    }
    t->card.arqc_ok = true;
    after_arqc(t);
}

/* Parses DE 55, picks the derivation from the CVN and asks KQ (mode 0) to verify the ARQC. */
static void verify_arqc(struct sw_txn *t)
{
    struct iso_tlv items[TLV_MAX];
    size_t n = 0, count = 0;
    struct iso_err err;
    const uint8_t *p = iso_get(&t->req, 55, &n);
    if (!p) {
        refuse(t, "30", SW_OUT_REJECTED, "chip POS entry mode without chip data (DE 55)", 55);
        return;
    }
    if (iso_tlv_parse(p, n, items, TLV_MAX, &count, &err) != 0) {
        refuse(t, "30", SW_OUT_REJECTED, "DE 55 is not valid BER-TLV", 55);
        return;
    }
    uint8_t data[DATA_MAX];
    size_t dlen = 0;
    for (size_t i = 0; i < sizeof arqc_tags / sizeof arqc_tags[0]; i++) {
        const struct iso_tlv *it = iso_tlv_find(items, count, arqc_tags[i].tag);
        if (!it || it->len != arqc_tags[i].len) {
            refuse(t, "30", SW_OUT_REJECTED, "DE 55 lacks a tag the ARQC needs, or its length", 55);
            return;
        }
        memcpy(data + dlen, it->value, it->len);
        dlen += it->len;
    }
    const struct iso_tlv *ac = iso_tlv_find(items, count, 0x9F26),
                         *cid = iso_tlv_find(items, count, 0x9F27),
                         *iad = iso_tlv_find(items, count, 0x9F10),
                         *psn = iso_tlv_find(items, count, 0x5F34),
                         *amt = iso_tlv_find(items, count, 0x9F02);
    /* Visa IAD (formats 0/1/3): length byte 06, DKI, CVN, CVR (4 bytes, its own length first) */
    if (!ac || ac->len != 8 || !cid || cid->len != 1 || !iad || iad->len < 7 || iad->len > 32 ||
        (psn && psn->len != 1)) {
        refuse(t, "30", SW_OUT_REJECTED, "DE 55 lacks 9F26, 9F27 or 9F10, or one is malformed", 55);
        return;
    }
    /* The cryptogram covers 9F02: it must be the amount the switch forwards (DE 4). */
    char de4[13], amt_hex[13];
    field_text(&t->req, 4, de4, sizeof de4);
    at_hex_encode(amt->value, 6, amt_hex);
    if (de4[0] && strcmp(de4, amt_hex) != 0) {
        refuse(t, "30", SW_OUT_REJECTED, "DE 55 tag 9F02 is not the amount of DE 4", 55);
        return;
    }
    if ((cid->value[0] & 0xC0) != 0x80) {
        refuse(t, "30", SW_OUT_REJECTED, "DE 55 tag 9F27: the cryptogram is not an ARQC", 55);
        return;
    }
    t->card.cvn = iad->value[2];
    switch (t->card.cvn) {
    case 0x0A: /* CVN 10: the ICC MK itself, data ‖ CVR, zeros */
        t->card.scheme = '0';
        t->card.pad = '1';
        memcpy(data + dlen, iad->value + 3, 4);
        dlen += 4;
        break;
    case 0x12: /* CVN 18: common session key from the ATC, data ‖ IAD, 80 00.. */
        t->card.scheme = '2';
        t->card.pad = '2';
        memcpy(data + dlen, iad->value, iad->len);
        dlen += iad->len;
        break;
    default:
        at_log(AT_LOG_INFO, "card_auth", AT_STR("method", "arqc"), AT_UINT("cvn", t->card.cvn),
               AT_STR("result", "unsupported_cvn"));
        refuse(t, "12", SW_OUT_DECLINED, "cryptogram version (CVN) not supported", 55);
        return;
    }
    if (!t->card.imk_ac[0]) {
        refuse(t, "57", SW_OUT_DECLINED, "no IMK-AC for the card's BIN route", 55);
        return;
    }
    memcpy(t->card.arqc, ac->value, 8);
    memcpy(t->card.atc, iso_tlv_find(items, count, 0x9F36)->value, 2);
    memcpy(t->card.un, iso_tlv_find(items, count, 0x9F37)->value, 4);
    if (psn)
        snprintf(t->card.psn, sizeof t->card.psn, "%02X", psn->value[0]);
    else
        memcpy(t->card.psn, "00", 3);
    if (t->card.psn[0] > '9' || t->card.psn[1] > '9') {
        refuse(t, "30", SW_OUT_REJECTED, "DE 55 tag 5F34 (PSN) is not BCD", 55);
        return;
    }
    char cmd[512], pan[20];
    pan_text(t, pan);
    int len =
        hsm_client_build_kq(cmd, sizeof cmd, '0', t->card.scheme, t->card.pad, t->card.imk_ac, pan,
                            t->card.psn, t->card.atc, t->card.un, data, dlen, t->card.arqc, NULL);
    if (len < 0) {
        refuse(t, "30", SW_OUT_REJECTED, "chip data cannot make an ARQC verification", 55);
        return;
    }
    if (hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_kq_verify, t) != 0)
        refuse(t, "96", SW_OUT_ERROR, "HSM queue full", 0);
}

void sw_card_auth_start(struct sw_txn *t, const struct sw_refdata *ref, uint32_t card_keys)
{
    if (card_keys && card_keys <= ref->n_card_keys) {
        const struct sw_card_keys *k = &ref->card_keys[card_keys - 1];
        memcpy(t->card.imk_ac, k->imk_ac, sizeof t->card.imk_ac);
        memcpy(t->card.cvk, k->cvk, sizeof t->card.cvk);
    }
    t->card.chip = chip_entry(&t->req);
    if (iso_has(&t->req, 126)) {
        size_t n = 0, vlen = 0;
        const uint8_t *p = iso_get(&t->req, 126, &n), *val = NULL;
        int f = de126_find(p, n, "C2", &val, &vlen);
        if (f < 0) {
            refuse(t, "30", SW_OUT_REJECTED, "DE 126 is not tag, length, value elements", 126);
            return;
        }
        t->card.cvv2 = f == 1;
    }
    if (t->card.chip) {
        verify_arqc(t);
        return;
    }
    /* DE 55 in a request that is not a chip read is forwarded as received, unverified. */
    after_arqc(t);
}

bool sw_card_repeat_wanted(const struct sw_txn *t)
{
    return !t->card.arqc_ok && !t->no_answer && !t->v.names_original && chip_entry(&t->req) &&
           iso_has(&t->req, 55) && (t->v.kind == SW_KIND_AUTH || t->v.kind == SW_KIND_FINANCIAL);
}

void sw_card_repeat_start(struct sw_txn *t, const struct sw_refdata *ref)
{
    struct sw_route_match route;
    t->card.repeat = true;
    if (!sw_router_match(ref->router, (const char *)t->v.pan, t->v.pan_len, &route)) {
        refuse(t, "15", SW_OUT_REJECTED, "no BIN route", 2);
        return;
    }
    if (route.card_keys && route.card_keys <= ref->n_card_keys)
        memcpy(t->card.imk_ac, ref->card_keys[route.card_keys - 1].imk_ac, sizeof t->card.imk_ac);
    t->card.chip = true;
    verify_arqc(t);
}

/* ---------------------------------------------------------------- ARPC (KQ mode 2) */

static void on_kq_arpc(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("KQ", resp, len) : -1;
    if (e == 0 && len == 4 + 8) {
        memcpy(t->card.arpc, resp + 4, 8);
        memcpy(t->card.arpc_rc, t->rc, 3);
    } else {
        /* The answer goes without tag 91: the card treats it as issuer authentication failed. */
        at_log(AT_LOG_ERROR, "arpc_failed", AT_INT("hsm_error", e), AT_STR("rc", t->rc));
    }
    sw_txn_card_arpc_done(t);
}

bool sw_card_arpc_start(struct sw_txn *t)
{
    if (!t->card.arqc_ok || t->card.arpc_done || t->no_answer)
        return false;
    t->card.arpc_done = true;
    char cmd[256], pan[20];
    pan_text(t, pan);
    int len =
        hsm_client_build_kq(cmd, sizeof cmd, '2', t->card.scheme, '2', t->card.imk_ac, pan,
                            t->card.psn, t->card.atc, t->card.un, NULL, 0, t->card.arqc, t->rc);
    if (len < 0 || hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_kq_arpc, t) != 0) {
        at_log(AT_LOG_ERROR, "arpc_failed", AT_STR("reason", "HSM queue full"));
        return false;
    }
    return true;
}

int sw_card_answer_fields(const struct sw_txn *t, struct iso_msg *o)
{
    /* Only an ARPC made with the code the answer carries: an approval withdrawn later (96) goes
     * without one. */
    if (!t->card.arpc_rc[0] || memcmp(t->card.arpc_rc, t->rc, 2) != 0)
        return 0;
    uint8_t de55[12] = { 0x91, 10 };
    memcpy(de55 + 2, t->card.arpc, 8);
    memcpy(de55 + 10, t->rc, 2);
    return iso_set_copy(o, 55, de55, sizeof de55) == 0 ? 0 : -1;
}

int sw_card_issuer_fields(const struct sw_txn *t, struct iso_msg *o)
{
    if (!t->card.cvv2)
        return 0;
    /* DE 126 without C2 (the CVV2), plus CR01M: the switch verified it (a mismatch never gets
     * here: N7). */
    size_t n = 0, at = 0, k = 0;
    const uint8_t *p = iso_get(&t->req, 126, &n);
    char out[1000];
    while (p && at + 4 <= n) {
        size_t l = (size_t)(p[at + 2] - '0') * 10 + (size_t)(p[at + 3] - '0');
        if (!(p[at] == 'C' && p[at + 1] == '2') && k + 4 + l < sizeof out - 5) {
            memcpy(out + k, p + at, 4 + l);
            k += 4 + l;
        }
        at += 4 + l;
    }
    memcpy(out + k, t->card.cvv2_ok ? "CR01M" : "CR01U", 5);
    k += 5;
    return iso_set_copy(o, 126, out, k) == 0 ? 0 : -1;
}
