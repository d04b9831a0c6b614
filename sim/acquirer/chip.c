/* acquirer-sim as a chip card (docs/emv.md, docs/acquirer-sim.md): the DE 55 of a Visa CVN 10
 * or CVN 18 ARQC computed from the card's ICC master key, derived (option A) from the demo
 * issuer's lab IMK-AC of its BIN as the README's demo world lists it, and the check of the
 * ARPC (tag 91) the answer carries. Lab keys only: a real card never leaves its chip. */
#include "acquirer_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hex.h"
#include "hsm.h"

/* The demo issuers' lab IMK-AC per BIN (db/seed/demo_switch.sql holds them under the LMK). */
static const struct {
    const char *bin, *imk;
} demo_imk[] = {
    { "489001", "9D1F409BB3A832CB57D092EA7F52296D" },
    { "489002", "8651167A708075C8EFB6FD589DB0BC07" },
    { "489003", "CE0D02CE5467FD3B5E5E0868A2EF4526" },
    { "489004", "94DA4F7F98BCE57F16295419E5259BFE" },
};

/* ... and their lab CVK pairs (CVV2). */
static const char *const demo_cvk[] = {
    "C43E5101A76D76BFA1EA3EFB3194EC2C",
    "3734BF19261F45F82CF752F780264A32",
    "4ADAFE79F104C880C42020ABE692A862",
    "76108F0D0DA1C4376791316E8532F179",
};

/* Every demo card's PAN sequence number (5F34). */
#define DEMO_PSN "01"

static struct hsm_key *imk_of(const char *pan)
{
    for (size_t i = 0; i < sizeof demo_imk / sizeof demo_imk[0]; i++) {
        if (strncmp(pan, demo_imk[i].bin, 6) != 0)
            continue;
        uint8_t clear[16];
        struct hsm_key *k = NULL;
        if (at_hex_decode(demo_imk[i].imk, 32, clear, sizeof clear) != 16 ||
            hsm_key_from_clear(HSM_KT_MK_AC, clear, 16, &k) != HSM_OK)
            k = NULL;
        OPENSSL_cleanse(clear, sizeof clear);
        return k;
    }
    return NULL;
}

static size_t tlv(uint8_t *p, uint32_t tag, const uint8_t *v, size_t n)
{
    size_t k = 0;
    if (tag > 0xFF)
        p[k++] = (uint8_t)(tag >> 8);
    p[k++] = (uint8_t)tag;
    p[k++] = (uint8_t)n;
    memcpy(p + k, v, n);
    return k + n;
}

static void bcd(const char *digits, uint8_t *out, size_t nbytes)
{
    for (size_t i = 0; i < nbytes; i++)
        out[i] = (uint8_t)(((digits[2 * i] - '0') << 4) | (digits[2 * i + 1] - '0'));
}

int sim_chip_de55(const struct sim_txn *x, uint32_t stan, const char *ccy, uint64_t now_us,
                  uint8_t *out, size_t cap, size_t *len, struct sim_sent *s, char *err,
                  size_t errcap)
{
    if (x->chip_cvn != 10 && x->chip_cvn != 18) {
        snprintf(err, errcap, "chip: --cvn must be 10 or 18");
        return -1;
    }
    if (cap < 128) {
        snprintf(err, errcap, "chip: DE 55 buffer too small");
        return -1;
    }
    struct hsm_key *imk = imk_of(x->pan);
    if (!imk) {
        snprintf(err, errcap, "chip: no demo IMK-AC for this card's BIN (489001..489004)");
        return -1;
    }
    char d12[13], c4[5], date[40];
    uint8_t amt[6], other[6] = { 0 }, country[2], cur[2], tvr[5] = { 0 }, tdate[3], ttype[1], un[4],
                    aip[2] = { 0x18, 0x00 }, atc[2], cid[1] = { 0x80 };
    snprintf(d12, sizeof d12, "%012llu", (unsigned long long)x->amount);
    bcd(d12, amt, 6);
    snprintf(c4, sizeof c4, "0%s", ccy);
    bcd(c4, country, 2); /* the terminal's country: its currency's, as the demo has it */
    bcd(c4, cur, 2);
    time_t secs = (time_t)(now_us / 1000000);
    struct tm utc;
    gmtime_r(&secs, &utc);
    snprintf(date, sizeof date, "%02d%02d%02d", utc.tm_year % 100, utc.tm_mon + 1, utc.tm_mday);
    bcd(date, tdate, 3);
    ttype[0] = (uint8_t)(((x->proc[0] ? x->proc[0] : '0') - '0') << 4 |
                         ((x->proc[0] ? x->proc[1] : '0') - '0'));
    if (RAND_bytes(un, 4) != 1) {
        hsm_key_release(imk);
        snprintf(err, errcap, "chip: no random unpredictable number");
        return -1;
    }
    /* The ATC: the card's transaction counter, here the terminal's STAN counter (persistent). */
    atc[0] = (uint8_t)(stan >> 8);
    atc[1] = (uint8_t)stan;
    /* IAD (Visa format): length 06, DKI 01, CVN, CVR 03 A0 00 00 */
    uint8_t iad[7] = { 0x06, 0x01, (uint8_t)(x->chip_cvn == 10 ? 0x0A : 0x12), 0x03, 0xA0, 0, 0 };
    uint8_t data[64];
    size_t n = 0;
    memcpy(data + n, amt, 6), n += 6;
    memcpy(data + n, other, 6), n += 6;
    memcpy(data + n, country, 2), n += 2;
    memcpy(data + n, tvr, 5), n += 5;
    memcpy(data + n, cur, 2), n += 2;
    memcpy(data + n, tdate, 3), n += 3;
    memcpy(data + n, ttype, 1), n += 1;
    memcpy(data + n, un, 4), n += 4;
    memcpy(data + n, aip, 2), n += 2;
    memcpy(data + n, atc, 2), n += 2;
    if (x->chip_cvn == 10)
        memcpy(data + n, iad + 3, 4), n += 4;
    else
        memcpy(data + n, iad, 7), n += 7;
    uint8_t r[8] = { atc[0], atc[1] }, arqc[8];
    int rc = hsm_emv_arqc_generate_pad(imk, x->pan, DEMO_PSN,
                                       x->chip_cvn == 10 ? HSM_EMV_SKD_NONE : HSM_EMV_SKD_COMMON, r,
                                       x->chip_cvn == 10 ? HSM_PAD_1 : HSM_PAD_2, data, n, arqc);
    hsm_key_release(imk);
    if (rc != HSM_OK) {
        snprintf(err, errcap, "chip: ARQC computation failed (%d)", rc);
        return -1;
    }
    if (x->bad_arqc)
        arqc[7] ^= 0x01;
    uint8_t psn[1] = { 0x01 };
    size_t k = 0;
    k += tlv(out + k, 0x9F26, arqc, 8);
    k += tlv(out + k, 0x9F27, cid, 1);
    k += tlv(out + k, 0x9F10, iad, 7);
    k += tlv(out + k, 0x9F37, un, 4);
    k += tlv(out + k, 0x9F36, atc, 2);
    k += tlv(out + k, 0x95, tvr, 5);
    k += tlv(out + k, 0x9A, tdate, 3);
    k += tlv(out + k, 0x9C, ttype, 1);
    k += tlv(out + k, 0x9F02, amt, 6);
    k += tlv(out + k, 0x5F2A, cur, 2);
    k += tlv(out + k, 0x82, aip, 2);
    k += tlv(out + k, 0x9F1A, country, 2);
    k += tlv(out + k, 0x9F03, other, 6);
    k += tlv(out + k, 0x5F34, psn, 1);
    *len = k;
    if (s) {
        s->chip_cvn = x->chip_cvn;
        memcpy(s->arqc, arqc, 8);
        memcpy(s->atc, atc, 2);
        snprintf(s->pan, sizeof s->pan, "%s", x->pan);
    }
    return 0;
}

const char *sim_chip_arpc_status(const struct sim_sent *s, const struct sim_resp *r)
{
    if (!s->chip_cvn)
        return NULL;
    if (!r->has_arpc)
        return "absent";
    struct hsm_key *imk = imk_of(s->pan);
    if (!imk)
        return "bad";
    uint8_t rr[8] = { s->atc[0], s->atc[1] }, arpc[8];
    int rc = hsm_emv_arpc1(imk, s->pan, DEMO_PSN,
                           s->chip_cvn == 10 ? HSM_EMV_SKD_NONE : HSM_EMV_SKD_COMMON, rr, s->arqc,
                           r->arpc + 8, arpc);
    hsm_key_release(imk);
    /* tag 91 = ARPC ‖ ARC, and the ARC is the answer's DE 39 */
    bool ok =
        rc == HSM_OK && CRYPTO_memcmp(arpc, r->arpc, 8) == 0 && memcmp(r->arpc + 8, r->rc, 2) == 0;
    return ok ? "ok" : "bad";
}

void sim_chip_parse_answer(const struct iso_msg *m, struct sim_resp *r)
{
    size_t n = 0, count = 0;
    const uint8_t *p = iso_get(m, 55, &n);
    struct iso_tlv items[16];
    struct iso_err e;
    if (!p || iso_tlv_parse(p, n, items, 16, &count, &e) != 0)
        return;
    const struct iso_tlv *t = iso_tlv_find(items, count, 0x91);
    if (t && t->len == 10) {
        memcpy(r->arpc, t->value, 10);
        r->has_arpc = true;
    }
}

int sim_demo_cvv2(const char *pan, const char *expiry, char cvv2[4])
{
    for (size_t i = 0; i < sizeof demo_imk / sizeof demo_imk[0]; i++) {
        if (strncmp(pan, demo_imk[i].bin, 6) != 0)
            continue;
        uint8_t clear[16];
        struct hsm_key *k = NULL;
        int rc = -1;
        if (at_hex_decode(demo_cvk[i], 32, clear, sizeof clear) == 16 &&
            hsm_key_from_clear(HSM_KT_CVK, clear, 16, &k) == HSM_OK) {
            rc = hsm_cvv_generate(k, pan, expiry, "000", cvv2) == HSM_OK ? 0 : -1;
            hsm_key_release(k);
        }
        OPENSSL_cleanse(clear, sizeof clear);
        return rc;
    }
    return -1;
}
