/* hsm-sim protocol layer: framing, header echo, command dispatch, strict
 * field parsers and response building. The per-command handlers live in
 * commands.c; this file never sees a key or a PIN, only field boundaries. */
#include "proto.h"
#include "proto_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hsm_proto {
    unsigned header_len;
    struct hsm_crypto *crypto;
    char lmk_kcv[17];
    /* command code (two of [0-9A-Z]) → row of hsm_commands, or NULL */
    const struct hsm_cmd_def *lut[36 * 36];
};

static int code_index(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return -1;
}

static int lut_slot(const uint8_t code[2])
{
    int a = code_index(code[0]), b = code_index(code[1]);
    if (a < 0 || b < 0)
        return -1;
    return a * 36 + b;
}

int hsm_proto_new(const struct hsm_proto_config *cfg, struct hsm_proto **out, char *err,
                  size_t errcap)
{
    if (cfg->header_len > HSM_PROTO_MAX_HEADER) {
        snprintf(err, errcap, "header length %u exceeds %d", cfg->header_len, HSM_PROTO_MAX_HEADER);
        return -1;
    }
    struct hsm_proto *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    p->header_len = cfg->header_len;
    if (hsm_crypto_new(cfg->lmk_path, cfg->lmk_keyblock_path, &p->crypto, err, errcap) != 0) {
        free(p);
        return -1;
    }
    hsm_crypto_lmk_kcv(p->crypto, p->lmk_kcv);
    for (size_t i = 0; i < hsm_n_commands; i++) {
        int s = lut_slot((const uint8_t *)hsm_commands[i].code);
        if (s >= 0)
            p->lut[s] = &hsm_commands[i];
    }
    *out = p;
    return 0;
}

void hsm_proto_free(struct hsm_proto *p)
{
    if (!p)
        return;
    hsm_crypto_free(p->crypto);
    free(p);
}

struct hsm_crypto *hsm_proto_crypto(struct hsm_proto *p)
{
    return p->crypto;
}

const char *hsm_proto_lmk_kcv(const struct hsm_proto *p)
{
    return p->lmk_kcv;
}

int hsm_proto_deframe(const uint8_t *buf, size_t avail, size_t max_body, size_t *body_len)
{
    if (avail < 2)
        return 0;
    size_t len = (size_t)buf[0] << 8 | buf[1];
    if (len > max_body)
        return -1;
    if (avail < 2 + len)
        return 0;
    *body_len = len;
    return 1;
}

static void put2(char *dst, int code)
{
    dst[0] = (char)('0' + code / 10 % 10);
    dst[1] = (char)('0' + code % 10);
}

/* The response code of a command is its code with the second character
 * advanced by one (A0→A1, NC→ND, B9→BA). Only called for commands of the
 * table, none of which ends in Z. */
static void response_code(const uint8_t code[2], char resp[2])
{
    resp[0] = (char)code[0];
    resp[1] = (char)(code[1] == '9' ? 'A' : code[1] + 1);
}

size_t hsm_proto_execute(struct hsm_proto *p, const uint8_t *body, size_t len, uint8_t *out,
                         size_t cap, struct hsm_proto_result *res)
{
    const size_t hl = p->header_len;
    char *o = (char *)out;
    int ec;

    memcpy(res->cmd, "??", 3);
    /* Header echo. A frame too short to carry header + command code gets the
     * bytes it did carry (space-padded) and "ZZ51": invalid message header. */
    if (len < hl + 2) {
        size_t have = len < hl ? len : hl;
        memcpy(o, body, have);
        memset(o + have, ' ', hl - have);
        memcpy(o + hl, "ZZ51", 4);
        memcpy(res->resp, "ZZ", 3);
        memcpy(res->err, "51", 3);
        return hl + 4;
    }
    memcpy(o, body, hl);
    const uint8_t *code = body + hl;
    res->cmd[0] = (char)code[0];
    res->cmd[1] = (char)code[1];

    int slot = lut_slot(code);
    const struct hsm_cmd_def *def = slot >= 0 ? p->lut[slot] : NULL;
    if (!def) {
        /* Unknown command: payShield answers "ZZ" with error 00 (see
         * docs/hsm-sim.md for why); the connection stays up. */
        if (slot < 0)
            res->cmd[0] = res->cmd[1] = '?';
        memcpy(o + hl, "ZZ00", 4);
        memcpy(res->resp, "ZZ", 3);
        memcpy(res->err, "00", 3);
        return hl + 4;
    }
    response_code(code, o + hl);
    memcpy(res->resp, o + hl, 2);
    res->resp[2] = '\0';

    struct hsm_cur in = { .p = (const char *)code + 2, .n = len - hl - 2, .off = 0 };
    struct hsm_out fields = { .p = o + hl + 4, .len = 0, .cap = cap - hl - 4 };
    if (in.n < def->min_len)
        ec = HSM_E_INPUT;
    else if (in.n > def->max_len)
        ec = HSM_E_NFIELDS;
    else
        ec = def->fn(p, &in, &fields);
    if (ec == 0 && fields.len > fields.cap)
        ec = HSM_E_INTERNAL; /* a handler outgrew the buffer: never send a partial answer */
    if (ec != 0)
        fields.len = 0; /* on any error payShield sends the error code alone */
    put2(o + hl + 2, ec);
    memcpy(res->err, o + hl + 2, 2);
    res->err[2] = '\0';
    return hl + 4 + fields.len;
}

/* ---- field parsers ---- */

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F') || (ch >= 'a' && ch <= 'f');
}

size_t hsm_cur_left(const struct hsm_cur *c)
{
    return c->n - c->off;
}

bool hsm_cur_peek(const struct hsm_cur *c, char ch)
{
    return c->off < c->n && c->p[c->off] == ch;
}

int hsm_cur_take(struct hsm_cur *c, size_t n, const char **out)
{
    if (hsm_cur_left(c) < n)
        return HSM_E_INPUT;
    *out = c->p + c->off;
    c->off += n;
    return 0;
}

int hsm_cur_hex(struct hsm_cur *c, size_t n, const char **out)
{
    if (hsm_cur_left(c) < n)
        return HSM_E_INPUT;
    const char *s = c->p + c->off;
    for (size_t i = 0; i < n; i++)
        if (!is_hex(s[i]))
            return HSM_E_INPUT;
    *out = s;
    c->off += n;
    return 0;
}

int hsm_cur_digits(struct hsm_cur *c, size_t n, const char **out)
{
    if (hsm_cur_left(c) < n)
        return HSM_E_INPUT;
    const char *s = c->p + c->off;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return HSM_E_INPUT;
    *out = s;
    c->off += n;
    return 0;
}

int hsm_cur_num(struct hsm_cur *c, size_t n, unsigned *out)
{
    const char *s;
    int e = hsm_cur_digits(c, n, &s);
    if (e)
        return e;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    *out = v;
    return 0;
}

int hsm_cur_hexnum(struct hsm_cur *c, size_t n, unsigned *out)
{
    const char *s;
    int e = hsm_cur_hex(c, n, &s);
    if (e)
        return e;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        unsigned d = ch <= '9' ? (unsigned)(ch - '0') : (unsigned)((ch | 0x20) - 'a' + 10);
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

int hsm_cur_char(struct hsm_cur *c, char *out)
{
    if (hsm_cur_left(c) < 1)
        return HSM_E_INPUT;
    *out = c->p[c->off++];
    return 0;
}

int hsm_cur_delim(struct hsm_cur *c, char d)
{
    if (!hsm_cur_peek(c, d))
        return HSM_E_INPUT;
    c->off++;
    return 0;
}

int hsm_cur_keyblock(struct hsm_cur *c, char prefix, struct hsm_keyf *k)
{
    size_t left = hsm_cur_left(c);
    const char *s = c->p + c->off;
    if (left < 1 || s[0] != prefix)
        return HSM_E_SCHEME;
    if (left < 6)
        return HSM_E_INPUT;
    for (int i = 2; i < 6; i++)
        if (s[i] < '0' || s[i] > '9')
            return HSM_E_INPUT;
    size_t len =
        (size_t)((s[2] - '0') * 1000 + (s[3] - '0') * 100 + (s[4] - '0') * 10 + (s[5] - '0'));
    if (len < 16 || len + 1 > left)
        return HSM_E_INPUT;
    for (size_t i = 1; i <= len; i++)
        if (s[i] < 0x20 || s[i] > 0x7E)
            return HSM_E_INPUT;
    k->scheme = prefix;
    k->hex = s + 1;
    k->hexlen = len;
    c->off += 1 + len;
    return 0;
}

int hsm_cur_key(struct hsm_cur *c, enum hsm_keyshape shape, struct hsm_keyf *k)
{
    if (hsm_cur_left(c) < 1)
        return HSM_E_INPUT;
    char s = c->p[c->off];
    size_t n;
    if (s == 'S') /* a key block under the key-block LMK: any shape */
        return hsm_cur_keyblock(c, 'S', k);
    if (shape == HSM_KEY_AES) {
        if (s != 'A')
            return HSM_E_SCHEME;
        size_t save = c->off++;
        int e = hsm_cur_hex(c, 32, &k->hex);
        if (e) {
            c->off = save;
            return e;
        }
        k->scheme = 'A';
        k->hexlen = 32;
        return 0;
    }
    switch (s) {
    case 'Z': /* explicit single length */
        n = 16;
        break;
    case 'U':
    case 'X':
        n = 32;
        break;
    case 'T':
    case 'Y':
        n = 48;
        break;
    default:
        if (!is_hex(s))
            return HSM_E_SCHEME; /* a letter we do not know as a key scheme */
        s = 0;
        n = shape == HSM_KEY_PAIR ? 32 : 16;
        break;
    }
    size_t save = c->off;
    if (s)
        c->off++;
    int e = hsm_cur_hex(c, n, &k->hex);
    if (e) {
        c->off = save;
        return e;
    }
    k->scheme = s;
    k->hexlen = n;
    return 0;
}

int hsm_cur_digits_until(struct hsm_cur *c, char d, size_t min, size_t max, const char **out,
                         size_t *len)
{
    const char *s = c->p + c->off;
    size_t left = hsm_cur_left(c), i = 0;
    while (i < left && s[i] != d) {
        if (s[i] < '0' || s[i] > '9')
            return HSM_E_INPUT;
        i++;
    }
    if (i == left || i < min || i > max)
        return HSM_E_INPUT;
    *out = s;
    *len = i;
    c->off += i + 1;
    return 0;
}

int hsm_cur_end(struct hsm_cur *c)
{
    if (hsm_cur_peek(c, '%')) {
        const char *id;
        c->off++;
        if (hsm_cur_digits(c, 2, &id) != 0)
            return HSM_E_INPUT;
        if (id[0] != '0' || id[1] != '0')
            return HSM_E_LMK; /* only LMK 00 is loaded */
    }
    return hsm_cur_left(c) == 0 ? 0 : HSM_E_NFIELDS;
}

/* ---- response builders ---- */

void hsm_out_str(struct hsm_out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        o->len = o->cap + 1; /* sticky overflow */
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

void hsm_out_cstr(struct hsm_out *o, const char *s)
{
    hsm_out_str(o, s, strlen(s));
}

void hsm_out_hex(struct hsm_out *o, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789ABCDEF";
    if (o->len + 2 * n > o->cap) {
        o->len = o->cap + 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        o->p[o->len++] = digits[b[i] >> 4];
        o->p[o->len++] = digits[b[i] & 15];
    }
}

void hsm_out_num(struct hsm_out *o, unsigned v, unsigned width)
{
    char tmp[16];
    if (width > sizeof tmp)
        width = sizeof tmp;
    for (unsigned i = width; i-- > 0;) {
        tmp[i] = (char)('0' + v % 10);
        v /= 10;
    }
    hsm_out_str(o, tmp, width);
}
