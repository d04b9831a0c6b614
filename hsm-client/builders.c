/* Command builders of the HSM client: format the payShield commands the
 * switch and the issuer simulator send, field by field, refusing any field of
 * the wrong shape so that a caller's bug shows up here and not as a "15" from
 * the HSM. */
#include "hsmclient.h"

#include "hex.h"

#include <string.h>

struct buf {
    char *p;
    size_t len, cap;
    bool bad;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (!n)
        return;
    if (b->bad || b->len + n > b->cap) {
        b->bad = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static bool all(const char *s, size_t n, bool hex)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= '0' && ch <= '9') ||
                  (hex && ((ch >= 'A' && ch <= 'F') || (ch >= 'a' && ch <= 'f')));
        if (!ok)
            return false;
    }
    return true;
}

/* A field of exactly n digits (hex = false) or hex characters. */
static void fixed(struct buf *b, const char *s, size_t n, bool hex)
{
    if (!s || strlen(s) != n || !all(s, n, hex)) {
        b->bad = true;
        return;
    }
    put(b, s, n);
}

/* A key as the caller holds it: 16H, or a scheme letter and 32H / 48H. */
static void key(struct buf *b, const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 16 || (n == 32 && all(k, 32, true))) {
        fixed(b, k, n, true);
        return;
    }
    if (n == 33 && strchr("UXA", k[0]) && all(k + 1, 32, true)) {
        put(b, k, n);
        return;
    }
    if (n == 49 && strchr("TY", k[0]) && all(k + 1, 48, true)) {
        put(b, k, n);
        return;
    }
    b->bad = true;
}

static int done(struct buf *b)
{
    return b->bad ? -1 : (int)b->len;
}

int hsm_client_account12(const char *pan, char out[13])
{
    size_t n = pan ? strlen(pan) : 0;
    if (n < 13 || n > 19 || !all(pan, n, false))
        return -1;
    memcpy(out, pan + n - 13, 12);
    out[12] = '\0';
    return 0;
}

static int translate(char *buf, size_t cap, const char *code, const char *src, const char *dst,
                     const char *pin_block, const char *src_fmt, const char *dst_fmt,
                     const char *account12)
{
    struct buf b = { buf, 0, cap, false };
    put(&b, code, 2);
    key(&b, src);
    key(&b, dst);
    put(&b, "12", 2);
    fixed(&b, pin_block, 16, true);
    fixed(&b, src_fmt, 2, false);
    fixed(&b, dst_fmt, 2, false);
    fixed(&b, account12, 12, false);
    return done(&b);
}

int hsm_client_build_ca(char *buf, size_t cap, const char *tpk, const char *zpk,
                        const char *pin_block, const char *src_fmt, const char *dst_fmt,
                        const char *account12)
{
    return translate(buf, cap, "CA", tpk, zpk, pin_block, src_fmt, dst_fmt, account12);
}

int hsm_client_build_cc(char *buf, size_t cap, const char *src_zpk, const char *dst_zpk,
                        const char *pin_block, const char *src_fmt, const char *dst_fmt,
                        const char *account12)
{
    return translate(buf, cap, "CC", src_zpk, dst_zpk, pin_block, src_fmt, dst_fmt, account12);
}

int hsm_client_build_dukpt(char *buf, size_t cap, bool g0, const char *bdk, const char *zpk,
                           const char *ksn, const char *pin_block, const char *dst_fmt,
                           const char *account12)
{
    struct buf b = { buf, 0, cap, false };
    put(&b, g0 ? "G0" : "CI", 2);
    key(&b, bdk);
    key(&b, zpk);
    put(&b, "605", 3);
    fixed(&b, ksn, 20, true);
    fixed(&b, pin_block, 16, true);
    if (g0)
        put(&b, "01", 2); /* TDES DUKPT devices send ISO 9564 format 0 */
    fixed(&b, dst_fmt, 2, false);
    fixed(&b, account12, 12, false);
    return done(&b);
}

int hsm_client_build_x0(char *buf, size_t cap, const char *bdk, const char *zpk, const char *ksn,
                        const char *pin_block, const char *dst_fmt, const char *pan)
{
    struct buf b = { buf, 0, cap, false };
    size_t n = pan ? strlen(pan) : 0;
    char ll[2] = { (char)('0' + n / 10), (char)('0' + n % 10) };
    put(&b, "X0", 2);
    key(&b, bdk);
    key(&b, zpk);
    fixed(&b, ksn, 24, true);
    fixed(&b, pin_block, 32, true);
    fixed(&b, dst_fmt, 2, false);
    if (n < 1 || n > 19)
        b.bad = true;
    put(&b, ll, 2);
    fixed(&b, pan, n, false);
    return done(&b);
}

int hsm_client_build_pvv_verify(char *buf, size_t cap, bool zone, const char *pin_key,
                                const char *pvk, const char *pin_block, const char *fmt,
                                const char *account12, unsigned pvki, const char *pvv)
{
    struct buf b = { buf, 0, cap, false };
    char k = (char)('0' + pvki % 10);
    put(&b, zone ? "EC" : "DC", 2);
    key(&b, pin_key);
    key(&b, pvk);
    fixed(&b, pin_block, 16, true);
    fixed(&b, fmt, 2, false);
    fixed(&b, account12, 12, false);
    if (pvki > 9)
        b.bad = true;
    put(&b, &k, 1);
    fixed(&b, pvv, 4, false);
    return done(&b);
}

int hsm_client_build_ibm_verify(char *buf, size_t cap, bool zone, const char *pin_key,
                                const char *pvk, const char *pin_block, const char *fmt,
                                unsigned check_len, const char *account12, const char *dectab,
                                const char *vdata, const char *offset)
{
    struct buf b = { buf, 0, cap, false };
    char cl[2] = { (char)('0' + check_len / 10 % 10), (char)('0' + check_len % 10) };
    char off[12];
    size_t on = offset ? strlen(offset) : 0;
    put(&b, zone ? "EA" : "DA", 2);
    key(&b, pin_key);
    key(&b, pvk);
    put(&b, "12", 2);
    fixed(&b, pin_block, 16, true);
    fixed(&b, fmt, 2, false);
    if (check_len < 4 || check_len > 12)
        b.bad = true;
    put(&b, cl, 2);
    fixed(&b, account12, 12, false);
    fixed(&b, dectab, 16, false);
    if (!vdata || strlen(vdata) != 12)
        b.bad = true;
    else
        put(&b, vdata, 12);
    /* the offset field is 12H, left-justified and F-padded */
    if (on < 4 || on > 12 || !all(offset, on, false))
        b.bad = true;
    else {
        memset(off, 'F', sizeof off);
        memcpy(off, offset, on);
        put(&b, off, sizeof off);
    }
    return done(&b);
}

/* One layout for every MAC the daemons ask for: single block, binary input
 * (input format 0, half the bytes of hex), full 16H MAC, ISO 9797-1 alg 3,
 * padding method 1 — the acquirer interface and the issuer link both use the
 * whole 8-byte X9.19 MAC. */
static void mac_common(struct buf *b, const char *code, const char *key_type, const char *k,
                       const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789ABCDEF";
    char ml[4];
    put(b, code, 2);
    put(b, "00131", 5);
    if (!key_type || (strcmp(key_type, "003") != 0 && strcmp(key_type, "008") != 0))
        b->bad = true;
    else
        put(b, key_type, 3);
    key(b, k);
    if (len > 0xFFFF) {
        b->bad = true;
        return;
    }
    for (int i = 0; i < 4; i++)
        ml[i] = digits[(len >> (12 - 4 * i)) & 15];
    put(b, ml, 4);
    put(b, (const char *)data, len);
}

int hsm_client_build_m6(char *buf, size_t cap, const char *key_type, const char *k,
                        const uint8_t *data, size_t len)
{
    struct buf b = { buf, 0, cap, false };
    mac_common(&b, "M6", key_type, k, data, len);
    return done(&b);
}

int hsm_client_build_m8(char *buf, size_t cap, const char *key_type, const char *k,
                        const uint8_t *data, size_t len, const char *mac)
{
    struct buf b = { buf, 0, cap, false };
    mac_common(&b, "M8", key_type, k, data, len);
    fixed(&b, mac, 16, true);
    return done(&b);
}

int hsm_client_build_mac(char *buf, size_t cap, const char *key_type, const char *k,
                         const uint8_t *data, size_t len, const uint8_t *verify)
{
    char hex[17];
    if (!verify)
        return hsm_client_build_m6(buf, cap, key_type, k, data, len);
    at_hex_encode(verify, 8, hex);
    return hsm_client_build_m8(buf, cap, key_type, k, data, len, hex);
}

int hsm_client_resp_error(const char *cmd, const char *resp, size_t len)
{
    if (!cmd || !resp || len < 4 || strlen(cmd) != 2)
        return -1;
    char want1 = cmd[1] == '9' ? 'A' : (char)(cmd[1] + 1);
    if (resp[0] != cmd[0] || resp[1] != want1 || !all(resp + 2, 2, false))
        return -1;
    return (resp[2] - '0') * 10 + (resp[3] - '0');
}

int hsm_client_parse_pin(const char *cmd, const char *resp, size_t len, char block[17], char fmt[3])
{
    if (hsm_client_resp_error(cmd, resp, len) != 0 || len != 4 + 2 + 16 + 2 ||
        !all(resp + 4, 2, false) || !all(resp + 6, 16, true) || !all(resp + 22, 2, false))
        return -1;
    int pin_len = (resp[4] - '0') * 10 + (resp[5] - '0');
    if (pin_len < 4 || pin_len > 12)
        return -1;
    memcpy(block, resp + 6, 16);
    block[16] = '\0';
    memcpy(fmt, resp + 22, 2);
    fmt[2] = '\0';
    return pin_len;
}

int hsm_client_parse_mac(const char *resp, size_t len, char mac[17])
{
    if (hsm_client_resp_error("M6", resp, len) != 0 || len < 8 || !all(resp + 4, 4, false))
        return -1;
    size_t n = (size_t)(resp[4] - '0') * 1000 + (size_t)(resp[5] - '0') * 100 +
               (size_t)(resp[6] - '0') * 10 + (size_t)(resp[7] - '0');
    if ((n != 8 && n != 16) || len != 8 + n || !all(resp + 8, n, true))
        return -1;
    memcpy(mac, resp + 8, n);
    mac[n] = '\0';
    return (int)n;
}

int hsm_client_parse_mac8(const char *resp, size_t len, uint8_t mac[8])
{
    char hex[17];
    if (hsm_client_parse_mac(resp, len, hex) != 16 || at_hex_decode(hex, 16, mac, 8) != 8)
        return -1;
    return 0;
}

int hsm_client_build_cy(char *buf, size_t cap, const char *cvk, const char *cvv, const char *pan,
                        const char *expiry, const char *svc)
{
    struct buf b = { buf, 0, cap, false };
    size_t n = pan ? strlen(pan) : 0;
    put(&b, "CY", 2);
    key(&b, cvk);
    fixed(&b, cvv, 3, false);
    if (n < 12 || n > 19 || !all(pan, n, false))
        b.bad = true;
    put(&b, pan, n);
    put(&b, ";", 1);
    fixed(&b, expiry, 4, false);
    fixed(&b, svc, 3, false);
    return done(&b);
}

int hsm_client_build_kq(char *buf, size_t cap, char mode, char scheme, char pad, const char *imk,
                        const char *pan, const char *psn, const uint8_t atc[2], const uint8_t un[4],
                        const uint8_t *data, size_t len, const uint8_t arqc[8], const char *arc)
{
    struct buf b = { buf, 0, cap, false };
    size_t n = pan ? strlen(pan) : 0;
    char digits[16];
    uint8_t panpsn[8];
    char ll[3];
    if (mode < '0' || mode > '2' || scheme < '0' || scheme > '2' || (pad != '1' && pad != '2') ||
        n < 12 || n > 19 || !all(pan, n, false) || !psn || strlen(psn) != 2 ||
        !all(psn, 2, false) || len > 255 || (mode != '0' && (!arc || strlen(arc) != 2)))
        return -1;
    /* right-most 16 digits of PAN ‖ PSN, packed BCD (8 bytes) */
    memset(digits, '0', sizeof digits);
    size_t take = n < 14 ? n : 14;
    memcpy(digits + 14 - take, pan + n - take, take);
    memcpy(digits + 14, psn, 2);
    for (int i = 0; i < 8; i++)
        panpsn[i] = (uint8_t)(((digits[2 * i] - '0') << 4) | (digits[2 * i + 1] - '0'));
    char head[2] = { mode, scheme };
    put(&b, "KQ", 2);
    put(&b, head, 2);
    key(&b, imk);
    put(&b, (const char *)panpsn, 8);
    put(&b, (const char *)atc, 2);
    put(&b, (const char *)un, 4);
    at_hex_encode((const uint8_t[]){ (uint8_t)len }, 1, ll);
    put(&b, ll, 2);
    put(&b, (const char *)data, len);
    put(&b, ";", 1);
    put(&b, (const char *)arqc, 8);
    if (mode != '0')
        put(&b, arc, 2);
    if (pad != '2') {
        char opt[2] = { '#', pad };
        put(&b, opt, 2);
    }
    return done(&b);
}
