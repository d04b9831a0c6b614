/* Request building and response checking for a terminal: fields per the acquirer
 * interface, the PIN block for the terminal's key scheme (TPK ISO 0, DUKPT-TDES ISO 0
 * under the PIN variant, DUKPT-AES ISO 4 under the usage-1000 key), and the MAC over
 * the exact packed bytes from the MTI to the MAC field's data. Clear PINs and keys
 * only ever sit in stack buffers that are wiped before returning. */
#include "acquirer_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "clock.h"
#include "fmt.h"
#include "parse.h"
#include "hex.h"
#include "hsm.h"
#include "isonet.h"

#define ARENA_BYTES 1536

static int fail(char *err, size_t errcap, const char *what)
{
    snprintf(err, errcap, "%s", what);
    return -1;
}

/* Two decimal digits of v (0..99). */
static void put2(char *out, int v)
{
    out[0] = (char)('0' + (v / 10) % 10);
    out[1] = (char)('0' + v % 10);
}

int sim_frame_header(const struct sim_term *t, size_t msg_len, uint8_t *hdr)
{
    struct iso_err ie;
    size_t hl = iso_frame_header_len(t->framing);
    if (iso_frame_header(t->framing, 0, msg_len, t->tpdu, hdr, ISO_FRAME_MAX_HEADER, &ie) != 0)
        return -1;
    return (int)hl;
}

int sim_term_mac(struct sim_term *t, const uint8_t *data, size_t len, uint8_t mac[8])
{
    uint8_t full[16];
    size_t n = 0;
    if (hsm_mac_generate(t->tak, HSM_MAC_ISO9797_3, HSM_PAD_1, data, len, full, &n) != HSM_OK ||
        n < 8)
        return -1;
    memcpy(mac, full, 8);
    return 0;
}

/* Encrypts the PIN for x->pan under t's PIN key. Fills blk (8 or 16 bytes, *blen) and,
 * for DUKPT, the KSN (*ksnlen 10 or 12). */
static int pin_block(struct sim_term *t, const struct sim_txn *x, uint8_t blk[16], size_t *blen,
                     uint8_t ksn[12], size_t *ksnlen, char *err, size_t errcap)
{
    int rc = -1;
    *ksnlen = 0;
    if (t->scheme == SIM_KS_TPK) {
        if (hsm_pin_encrypt(t->tpk, HSM_PINFMT_ISO0, x->pin, x->pan, blk, blen) != HSM_OK)
            return fail(err, errcap, "PIN block: PIN must be 4..12 digits, PAN 13..19 digits");
        return 0;
    }
    uint32_t ctr;
    if (sim_term_next_ksn(t, &ctr, err, errcap) != 0)
        return -1;
    uint8_t txn[16], wk[16];
    if (t->scheme == SIM_KS_DUKPT_TDES) {
        memcpy(ksn, t->ksn0, 10);
        ksn[7] = (uint8_t)((ksn[7] & 0xE0) | ((ctr >> 16) & 0x1F));
        ksn[8] = (uint8_t)(ctr >> 8);
        ksn[9] = (uint8_t)ctr;
        *ksnlen = 10;
        struct hsm_key *k = NULL;
        if (hsm_dukpt_txn_key_clear(t->bdk, ksn, txn) == HSM_OK &&
            hsm_dukpt_variant_clear(txn, HSM_DUKPT_PIN, wk) == HSM_OK &&
            hsm_key_from_clear(HSM_KT_TPK, wk, 16, &k) == HSM_OK &&
            hsm_pin_encrypt(k, HSM_PINFMT_ISO0, x->pin, x->pan, blk, blen) == HSM_OK)
            rc = 0;
        hsm_key_release(k);
    } else {
        memcpy(ksn, t->ksn0, 8);
        ksn[8] = (uint8_t)(ctr >> 24);
        ksn[9] = (uint8_t)(ctr >> 16);
        ksn[10] = (uint8_t)(ctr >> 8);
        ksn[11] = (uint8_t)ctr;
        *ksnlen = 12;
        /* ISO 9564-1 format 4 under the X9.24-3 PIN key (key usage 1000). */
        struct hsm_key *k = NULL;
        if (hsm_dukpt_aes_txn_key_clear(t->bdk, ksn, txn) == HSM_OK &&
            hsm_dukpt_aes_working_key_clear(txn, ksn, HSM_AESDUKPT_PIN, wk) == HSM_OK &&
            hsm_key_from_clear_aes(HSM_KT_TPK, wk, 16, &k) == HSM_OK &&
            (x->iso4_fill
                 ? hsm_pin_encrypt_fill(k, HSM_PINFMT_ISO4, x->pin, x->pan, x->iso4_fill, blk, blen)
                 : hsm_pin_encrypt(k, HSM_PINFMT_ISO4, x->pin, x->pan, blk, blen)) == HSM_OK &&
            *blen == 16)
            rc = 0;
        hsm_key_release(k);
    }
    OPENSSL_cleanse(txn, sizeof txn);
    OPENSSL_cleanse(wk, sizeof wk);
    if (rc != 0)
        return fail(err, errcap, "PIN block: PIN must be 4..12 digits, PAN 13..19 digits");
    return 0;
}

#define SET(f, p, n)                                                                               \
    do {                                                                                           \
        if (iso_set_copy(&m, (f), (p), (n)) != 0) {                                                \
            snprintf(err, errcap, "DE %d does not fit the message", (f));                          \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
#define SETS(f, s) SET((f), (s), strlen(s))

int sim_term_build_request(struct sim_term *t, const struct sim_txn *x, uint8_t *out, size_t cap,
                           size_t *outlen, struct sim_sent *sent, char *err, size_t errcap)
{
    uint8_t arena[ARENA_BYTES];
    struct iso_msg m;
    struct iso_err ie;
    struct sim_sent s;
    uint8_t blk[16] = { 0 }, ksn[12], de55[160];
    size_t blen = 0, ksnlen = 0, de55len = 0;
    char de126[8] = "";
    int rc = -1;

    memset(&s, 0, sizeof s);
    iso_msg_init(&m, arena, sizeof arena);
    const char *mti = x->mti[0] ? x->mti : sim_type_mti(x->type);
    const char *proc = x->proc[0] ? x->proc : sim_type_proc(x->type);
    bool echo = mti[0] == '0' && mti[1] == '8';
    bool reversal = mti[1] == '4';
    if (iso_set_mti(&m, mti) != 0)
        return fail(err, errcap, "MTI must be 4 digits");
    at_strlcpy(s.mti, mti, sizeof s.mti);

    uint32_t stan = x->stan;
    if (stan == 0 && sim_term_next_stan(t, &stan, err, errcap) != 0)
        return -1;
    if (stan > 999999)
        return fail(err, errcap, "STAN above 999999");
    /* No snprintf per request (a profile of `acquirer-sim load` found ~4 % of its CPU in
     * vfprintf): digit writers of common/fmt.h. */
    at_put_digits(s.stan, 6, stan);
    s.stan[6] = '\0';
    at_strlcpy(s.tid, t->id, sizeof s.tid);

    uint64_t now = x->now_us ? x->now_us : at_wall_us();
    time_t secs = (time_t)(now / 1000000);
    struct tm utc, loc;
    gmtime_r(&secs, &utc);
    localtime_r(&secs, &loc);
    put2(s.de7, utc.tm_mon + 1);
    put2(s.de7 + 2, utc.tm_mday);
    put2(s.de7 + 4, utc.tm_hour);
    put2(s.de7 + 6, utc.tm_min);
    put2(s.de7 + 8, utc.tm_sec);
    s.de7[10] = '\0';

    SETS(7, s.de7);
    SETS(11, s.stan);
    SETS(41, t->id);
    if (echo) {
        SETS(70, x->type == SIM_T_KEYS ? "162" : "301"); /* 162: key download (docs/keys.md) */
    } else {
        char buf[48];
        if (!at_is_digits(x->pan, 12, 19)) {
            fail(err, errcap, "PAN must be 12..19 digits");
            goto out;
        }
        if (!at_is_digits(proc, 6, 6)) {
            fail(err, errcap, "processing code must be 6 digits");
            goto out;
        }
        at_strlcpy(s.proc, proc, sizeof s.proc);
        SETS(2, x->pan);
        SETS(3, proc);
        bool balance = proc[0] == '3' && (proc[1] == '0' || proc[1] == '1');
        if (!balance) {
            if (x->amount > 999999999999ull) {
                fail(err, errcap, "amount above 12 digits");
                goto out;
            }
            at_put_digits(buf, 12, x->amount);
            buf[12] = '\0';
            SETS(4, buf);
        }
        put2(buf, loc.tm_hour);
        put2(buf + 2, loc.tm_min);
        put2(buf + 4, loc.tm_sec);
        buf[6] = '\0';
        SETS(12, buf);
        put2(buf, loc.tm_mon + 1);
        put2(buf + 2, loc.tm_mday);
        buf[4] = '\0';
        SETS(13, buf);
        if (x->expiry[0]) {
            if (!at_is_digits(x->expiry, 4, 4)) {
                fail(err, errcap, "expiry must be YYMM");
                goto out;
            }
            SETS(14, x->expiry);
        }
        bool with_pin = x->pin[0] && !reversal;
        /* chip read 051 (with a PIN) / 052; card not present (e-commerce) 812 */
        const char *entry = x->entry_mode[0]           ? x->entry_mode
                            : x->chip_cvn && !reversal ? (with_pin ? "051" : "052")
                            : x->cvv2[0] && !reversal  ? "812"
                            : with_pin                 ? "011"
                                                       : "012";
        SETS(22, entry);
        if (x->rrn[0]) {
            SETS(37, x->rrn);
        } else {
            /* Y DDD hh + STAN: unique per terminal per hour of the year. */
            at_put_digits(buf, 1, (uint64_t)(utc.tm_year % 10));
            at_put_digits(buf + 1, 3, (uint64_t)(utc.tm_yday + 1));
            put2(buf + 4, utc.tm_hour);
            at_put_digits(buf + 6, 6, stan);
            buf[12] = '\0';
            SETS(37, buf);
        }
        SETS(42, t->merchant);
        const char *ccy = x->currency[0] ? x->currency : t->currency;
        if (!at_is_digits(ccy, 3, 3)) {
            fail(err, errcap, "currency must be a 3-digit ISO 4217 code");
            goto out;
        }
        SETS(49, ccy);
        if (x->chip_cvn && !reversal) {
            if (sim_chip_de55(x, stan, ccy, now, de55, sizeof de55, &de55len, &s, err, errcap) != 0)
                goto out;
            SET(55, de55, de55len);
        } else if (x->de55_raw) {
            SET(55, x->de55_raw, x->de55_raw_len);
        }
        if (x->cvv2[0] && !reversal) {
            if (!at_is_digits(x->cvv2, 3, 3)) {
                fail(err, errcap, "CVV2 must be 3 digits");
                goto out;
            }
            snprintf(de126, sizeof de126, "C203%s", x->cvv2);
            SETS(126, de126);
        }
        if (x->cashback) {
            /* ISO additional amounts: account 00, type 40 (cash back), currency, D, 12 digits. */
            snprintf(buf, sizeof buf, "0040%sD%012llu", ccy, (unsigned long long)x->cashback);
            SETS(54, buf);
        }
        if (with_pin) {
            if (pin_block(t, x, blk, &blen, ksn, &ksnlen, err, errcap) != 0)
                goto out;
            s.pin = true;
            if (ksnlen) {
                at_hex_encode(ksn, ksnlen, s.ksn);
                SETS(62, s.ksn);
            }
            if (blen == 16) {
                char hex[33];
                at_hex_encode(blk, 16, hex);
                SETS(110, hex);
            } else {
                SET(52, blk, 8);
            }
        }
        /* DE 90 names the original: a reversal's, or the pre-auth of a completion or an
         * increment (an 0100 by default). */
        bool names_preauth = x->type == SIM_T_COMPLETION || x->type == SIM_T_INCREMENTAL;
        if ((reversal || names_preauth) && x->orig_stan) {
            struct isonet_de90 orig;
            char ostan[7];
            if (!at_is_digits(x->orig_time, 10, 10) || x->orig_stan > 999999) {
                fail(err, errcap, "DE 90: original time must be MMDDhhmmss, STAN <= 999999");
                goto out;
            }
            snprintf(ostan, sizeof ostan, "%06u", x->orig_stan);
            isonet_de90_make(&orig,
                             x->orig_mti[0] ? x->orig_mti
                             : reversal     ? "0200"
                                            : "0100",
                             ostan, x->orig_time, t->acquirer_id);
            if (isonet_de90_set(&m, &orig) != 0) {
                fail(err, errcap, "reversal: original MTI must be 4 digits (DE 90)");
                goto out;
            }
        }
        if (x->recipient[0]) {
            if (!sim_recipient_pan_ok(x->recipient) && !sim_recipient_msisdn_ok(x->recipient)) {
                fail(err, errcap,
                     "DE 103: the recipient must be a PAN (12..19 digits passing the Luhn check) "
                     "or a mobile number ('+' and 8..15 digits)");
                goto out;
            }
            SETS(103, x->recipient);
        }
    }

    /* The MAC: always the last field; DE 128 once a secondary bitmap is needed. */
    struct isonet_mac at;
    size_t n = 0;
    int prc = isonet_pack_mac(t->dialect, &m, out, cap, &n, &at, &ie);
    if (prc == ISO_E_SPEC) {
        fail(err, errcap, "dialect has no 8-byte binary MAC field");
        goto out;
    }
    if (prc != 0) {
        snprintf(err, errcap, "pack: %s", ie.reason);
        goto out;
    }
    s.mac_128 = at.field == 128;
    uint8_t mac[ISONET_MAC_LEN];
    if (sim_term_mac(t, out, at.off, mac) != 0) {
        fail(err, errcap, "MAC computation failed");
        goto out;
    }
    if (x->bad_mac)
        mac[7] ^= 0x01;
    isonet_mac_patch(out, &at, mac);
    *outlen = n;
    if (sent)
        *sent = s;
    rc = 0;
out:
    OPENSSL_cleanse(blk, sizeof blk);
    OPENSSL_cleanse(de126, sizeof de126);
    OPENSSL_cleanse(arena, sizeof arena);
    return rc;
}

int sim_term_build_frame(struct sim_term *t, const struct sim_txn *x, uint8_t *out, size_t cap,
                         size_t *outlen, struct sim_sent *sent, char *err, size_t errcap)
{
    size_t hl = iso_frame_header_len(t->framing), n = 0;
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    if (cap <= hl)
        return fail(err, errcap, "frame buffer too small");
    if (sim_term_build_request(t, x, out + hl, cap - hl, &n, sent, err, errcap) != 0)
        return -1;
    if (sim_frame_header(t, n, hdr) != (int)hl)
        return fail(err, errcap, "message too long for the framing");
    memcpy(out, hdr, hl);
    *outlen = hl + n;
    return 0;
}

const char *sim_mac_status_name(enum sim_mac_status s)
{
    switch (s) {
    case SIM_MAC_OK:
        return "ok";
    case SIM_MAC_BAD:
        return "BAD";
    default:
        return "absent";
    }
}

bool sim_mac_acceptable(const struct sim_resp *r)
{
    return r->mac == SIM_MAC_OK || (r->mac == SIM_MAC_ABSENT && r->mti[1] == '8');
}

static void copy_field(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    out[0] = '\0';
    if (!p)
        return;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7F ? (char)p[i] : '?';
    out[n] = '\0';
}

/* DE 54: 20-character amounts; the available balance (type 02) wins over ledger (01). */
static void parse_balance(const struct iso_msg *m, struct sim_resp *r)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, 54, &n);
    int best = 0;
    for (size_t off = 0; p && off + 20 <= n; off += 20) {
        const uint8_t *a = p + off;
        int kind = a[2] == '0' && a[3] == '2' ? 2 : a[2] == '0' && a[3] == '1' ? 1 : 0;
        if (kind == 0 || kind < best || (a[7] != 'C' && a[7] != 'D'))
            continue;
        int64_t v = 0;
        bool ok = true;
        for (int i = 8; i < 20; i++) {
            if (a[i] < '0' || a[i] > '9')
                ok = false;
            v = v * 10 + (a[i] - '0');
        }
        if (!ok)
            continue;
        best = kind;
        r->has_balance = true;
        r->balance = a[7] == 'D' ? -v : v;
        memcpy(r->balance_ccy, a + 4, 3);
        r->balance_ccy[3] = '\0';
    }
}

/* DE 6/51 (billed, or a transfer's recipient got), DE 10, DE 28 (fee), DE 44, DE 15 when present
 * and well formed; a malformed value is left out rather than shown wrong. */
static void parse_amounts(const struct iso_msg *m, struct sim_resp *r)
{
    char v[26];
    uint64_t n;
    copy_field(m, 6, v, sizeof v);
    if (at_is_digits(v, 12, 12) && at_parse_u64(v, 999999999999ull, &n)) {
        r->has_billing = true;
        r->billing = n;
    }
    copy_field(m, 51, r->billing_ccy, sizeof r->billing_ccy);
    copy_field(m, 10, v, sizeof v);
    if (at_is_digits(v, 8, 8) && v[0] <= '7')
        memcpy(r->rate, v, 9);
    copy_field(m, 28, v, sizeof v);
    if ((v[0] == 'D' || v[0] == 'C') && at_is_digits(v + 1, 8, 8) &&
        at_parse_u64(v + 1, 99999999, &n)) {
        r->has_fee = true;
        r->fee = v[0] == 'C' ? -(int64_t)n : (int64_t)n;
    }
    copy_field(m, 44, r->info, sizeof r->info);
    if (r->mti[1] == '8')
        copy_field(m, 48, r->keys, sizeof r->keys);
    copy_field(m, 15, v, sizeof v);
    if (at_is_digits(v, 4, 4))
        memcpy(r->settle_date, v, 5);
}

int sim_term_check_response(struct sim_term *t, const uint8_t *msg, size_t len, struct iso_msg *m,
                            struct sim_resp *r, char *err, size_t errcap)
{
    struct iso_err ie;
    memset(r, 0, sizeof *r);
    if (iso_unpack(t->dialect, msg, len, m, &ie) != 0) {
        snprintf(err, errcap, "response does not decode: %s (field %d, offset %zu)", ie.reason,
                 ie.field, ie.offset);
        return -1;
    }
    sim_resp_fill(t, msg, len, m, r);
    return 0;
}

void sim_resp_fill(struct sim_term *t, const uint8_t *msg, size_t len, const struct iso_msg *m,
                   struct sim_resp *r)
{
    memset(r, 0, sizeof *r);
    memcpy(r->mti, m->mti, 4);
    r->mti[4] = '\0';
    copy_field(m, 39, r->rc, sizeof r->rc);
    copy_field(m, 38, r->auth, sizeof r->auth);
    copy_field(m, 11, r->stan, sizeof r->stan);
    copy_field(m, 41, r->tid, sizeof r->tid);
    parse_balance(m, r);
    parse_amounts(m, r);
    sim_chip_parse_answer(m, r);

    if (!iso_has(m, 64) && !iso_has(m, 128)) {
        r->mac = SIM_MAC_ABSENT;
        return;
    }
    /* A MAC anywhere but where the rule puts it is a bad one. */
    struct isonet_mac at;
    r->mac = SIM_MAC_BAD;
    if (isonet_mac_locate(t->dialect, m, len, &at) == 0 &&
        hsm_mac_verify(t->tak, HSM_MAC_ISO9797_3, HSM_PAD_1, msg, at.off, at.value, 8) == HSM_OK)
        r->mac = SIM_MAC_OK;
}
