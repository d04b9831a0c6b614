/* Human-readable and JSON renderings of a message for logs and tools. Masked by default, driven
 * by each field spec's mask (PAN first 6 + last 4, track remainders and secrets replaced, DE 55
 * shown tag by tag with cryptograms and card data hidden). Writes into a caller buffer only. */
#include "iso_internal.h"

#include <stdio.h>
#include <string.h>

/* Bounded writer: keeps room for the NUL, remembers truncation. */
struct wb {
    char *p;
    size_t cap, len;
    int full;
};

static void put(struct wb *w, const char *s, size_t n)
{
    if (w->len + n + 1 > w->cap) {
        n = w->cap - w->len - 1;
        w->full = 1;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void puts_(struct wb *w, const char *s)
{
    put(w, s, strlen(s));
}

static void putch(struct wb *w, char c)
{
    put(w, &c, 1);
}

static void put_repeat(struct wb *w, char c, size_t n)
{
    while (n--)
        putch(w, c);
}

/* A text byte: JSON-escaped when json, '.' for non-printables in human mode. */
static void put_text_byte(struct wb *w, uint8_t c, int json)
{
    char tmp[8];
    if (json && (c == '"' || c == '\\')) {
        putch(w, '\\');
        putch(w, (char)c);
    } else if (c < 0x20 || c > 0x7E) {
        if (json) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            puts_(w, tmp);
        } else {
            putch(w, '.');
        }
    } else {
        putch(w, (char)c);
    }
}

static void put_hex(struct wb *w, const uint8_t *p, size_t n)
{
    uint8_t hex[64];
    while (n > 0) {
        size_t k = n < sizeof hex / 2 ? n : sizeof hex / 2;
        iso_hex_encode(p, k, hex);
        put(w, (const char *)hex, 2 * k);
        p += k;
        n -= k;
    }
}

/* PAN masking on characters: first 6 and last 4 kept when at least 13 characters (a real PAN),
 * otherwise everything but the last 4 (or all, below 5) replaced. */
static void put_masked_pan(struct wb *w, const uint8_t *p, size_t n, int json)
{
    size_t head = n >= 13 ? 6 : 0, tail = n >= 5 ? 4 : 0;
    for (size_t i = 0; i < n; i++) {
        if (i < head || i >= n - tail)
            put_text_byte(w, p[i], json);
        else
            putch(w, '*');
    }
}

static void put_masked_track2(struct wb *w, const uint8_t *p, size_t n, int json)
{
    size_t sep = 0;
    while (sep < n && p[sep] != '=' && p[sep] != 'D')
        sep++;
    put_masked_pan(w, p, sep, json);
    if (sep < n) {
        putch(w, (char)p[sep]);
        if (sep + 1 < n)
            puts_(w, "***");
    }
}

static void put_masked_track1(struct wb *w, const uint8_t *p, size_t n, int json)
{
    size_t i = 0;
    if (n && ((p[0] >= 'A' && p[0] <= 'Z')))
        put_text_byte(w, p[i++], json);
    size_t caret = i;
    while (caret < n && p[caret] != '^')
        caret++;
    if (caret == n) {
        puts_(w, "[masked]");
        return;
    }
    put_masked_pan(w, p + i, caret - i, json);
    puts_(w, "^***");
}

enum tagmask { TM_NONE, TM_PAN, TM_TRACK2, TM_ALL };

/* EMV tags whose values never appear in a masked rendering. */
static enum tagmask tlv_tag_mask(uint32_t tag)
{
    switch (tag) {
    case 0x5A: /* application PAN */
        return TM_PAN;
    case 0x57:   /* track 2 equivalent data */
    case 0x9F6B: /* track 2 data (contactless) */
        return TM_TRACK2;
    case 0x9F26: /* application cryptogram */
    case 0x9F4B: /* signed dynamic application data */
    case 0x9F10: /* issuer application data */
    case 0x56:   /* track 1 equivalent data */
    case 0x5F20: /* cardholder name */
    case 0x5F24: /* application expiration date */
    case 0x9F1F: /* track 1 discretionary data */
    case 0x9F20: /* track 2 discretionary data */
    case 0x99:   /* transaction PIN data */
        return TM_ALL;
    default:
        return TM_NONE;
    }
}

/* The value of one TLV item as hex, masked per tag. */
static void put_tlv_value(struct wb *w, const struct iso_tlv *t, int masked)
{
    enum tagmask tm = masked ? tlv_tag_mask(t->tag) : TM_NONE;
    if (tm == TM_NONE) {
        put_hex(w, t->value, t->len);
        return;
    }
    if (tm == TM_ALL) {
        put_repeat(w, '*', 2 * t->len);
        return;
    }
    uint8_t hex[512];
    size_t n = 2 * t->len;
    if (n > sizeof hex) { /* longer than any real PAN or track: hide it all */
        put_repeat(w, '*', n);
        return;
    }
    iso_hex_encode(t->value, t->len, hex);
    if (tm == TM_PAN)
        put_masked_pan(w, hex, n, 0);
    else
        put_masked_track2(w, hex, n, 0);
}

static void put_tag(struct wb *w, const struct iso_tlv *t)
{
    uint8_t tb[4];
    for (size_t i = 0; i < t->tag_len; i++)
        tb[i] = (uint8_t)(t->tag >> (8 * (t->tag_len - 1 - i)));
    put_hex(w, tb, t->tag_len);
}

#define TLV_MAX 96

/* A field value (inside quotes for JSON), masked as its spec says. */
static void put_value(struct wb *w, const struct iso_field_spec *s, const struct iso_view *v,
                      int masked, int json)
{
    uint8_t mask = masked ? s->mask : ISO_MASK_NONE;
    if (mask == ISO_MASK_ALL) {
        puts_(w, "[masked]");
        return;
    }
    if (mask == ISO_MASK_TLV) {
        struct iso_tlv items[TLV_MAX];
        size_t n;
        if (iso_tlv_parse(v->ptr, v->len, items, TLV_MAX, &n, NULL) != 0) {
            puts_(w, "[masked]");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            put_tag(w, &items[i]);
            const uint8_t *lp = items[i].value - items[i].len_len;
            put_hex(w, lp, items[i].len_len);
            put_tlv_value(w, &items[i], 1);
        }
        return;
    }
    const uint8_t *p = v->ptr;
    size_t n = v->len;
    uint8_t hex[512];
    if (s->type == ISO_T_B) {
        if (mask == ISO_MASK_NONE) {
            put_hex(w, p, n);
            return;
        }
        /* a b field with a PAN/track mask (a BCD PAN, say): mask its hex text */
        if (2 * n > sizeof(hex)) {
            puts_(w, "[masked]");
            return;
        }
        iso_hex_encode(p, n, hex);
        p = hex;
        n *= 2;
    }
    switch (mask) {
    case ISO_MASK_PAN:
        put_masked_pan(w, p, n, json);
        break;
    case ISO_MASK_TRACK2:
        put_masked_track2(w, p, n, json);
        break;
    case ISO_MASK_TRACK1:
        put_masked_track1(w, p, n, json);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            put_text_byte(w, p[i], json);
        break;
    }
}

/* The tag-by-tag breakdown of a TLV field; returns 0 if the value is not valid BER-TLV. */
static int put_tlv_list(struct wb *w, const struct iso_view *v, int masked, int json)
{
    struct iso_tlv items[TLV_MAX];
    size_t n;
    char tmp[48];
    if (iso_tlv_parse(v->ptr, v->len, items, TLV_MAX, &n, NULL) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (json) {
            puts_(w, i ? ",{\"tag\":\"" : "{\"tag\":\"");
            put_tag(w, &items[i]);
            snprintf(tmp, sizeof(tmp), "\",\"len\":%zu,\"value\":\"", items[i].len);
            puts_(w, tmp);
            put_tlv_value(w, &items[i], masked);
            puts_(w, "\"}");
        } else {
            puts_(w, "            ");
            put_tag(w, &items[i]);
            snprintf(tmp, sizeof(tmp), " (%zu) ", items[i].len);
            puts_(w, tmp);
            put_tlv_value(w, &items[i], masked);
            putch(w, '\n');
        }
    }
    return 1;
}

static const char *const type_label[] = { "-", "n", "a", "an", "ans", "ns", "as", "z", "x+n", "b" };
static const char *const kind_label[] = { "", "LL", "LLL", "LLLL" };

int iso_describe(const struct iso_dialect *d, const struct iso_msg *m, unsigned flags, char *out,
                 size_t cap)
{
    if (!d || !m || !out || cap == 0)
        return ISO_E_ARG;
    struct wb w = { out, cap, 0, 0 };
    int masked = !(flags & ISO_DESCRIBE_UNMASKED), json = (flags & ISO_DESCRIBE_JSON) != 0;
    char tmp[64];
    int any_high = m->bits[1] || m->bits[2];
    if (json) {
        puts_(&w, "{\"mti\":\"");
        put(&w, m->mti, 4);
        puts_(&w, "\"");
        if ((m->flags & ISO_MSG_SECONDARY) && !any_high)
            puts_(&w, ",\"secondary\":true");
        if ((m->flags & ISO_MSG_TERTIARY) && !m->bits[2])
            puts_(&w, ",\"tertiary\":true");
        puts_(&w, ",\"fields\":{");
        int first = 1;
        for (int f = iso_next(m, 0); f; f = iso_next(m, f)) {
            snprintf(tmp, sizeof(tmp), "%s\"%d\":\"", first ? "" : ",", f);
            puts_(&w, tmp);
            put_value(&w, &d->field[f], &m->f[f], masked, 1);
            putch(&w, '"');
            first = 0;
        }
        putch(&w, '}');
        first = 1;
        for (int f = iso_next(m, 0); f; f = iso_next(m, f)) {
            if (d->field[f].mask != ISO_MASK_TLV)
                continue;
            size_t mark = w.len;
            snprintf(tmp, sizeof(tmp), "%s\"%d\":[", first ? ",\"tlv\":{" : ",", f);
            puts_(&w, tmp);
            if (!put_tlv_list(&w, &m->f[f], masked, 1)) {
                w.len = mark; /* not TLV: no breakdown */
                continue;
            }
            putch(&w, ']');
            first = 0;
        }
        if (!first)
            putch(&w, '}');
        putch(&w, '}');
    } else {
        snprintf(tmp, sizeof(tmp), "MTI %.4s  dialect %s%s\n", m->mti, d->name,
                 masked ? "" : "  (UNMASKED)");
        puts_(&w, tmp);
        for (int f = iso_next(m, 0); f; f = iso_next(m, f)) {
            const struct iso_field_spec *s = &d->field[f];
            uint8_t t = s->type <= ISO_T_B ? s->type : 0;
            uint8_t k = s->len_kind <= ISO_LEN_LLLL ? s->len_kind : 0;
            snprintf(tmp, sizeof(tmp), "  DE %3d %-3s %-4s %4u  ", f, type_label[t], kind_label[k],
                     (unsigned)m->f[f].len);
            puts_(&w, tmp);
            put_value(&w, s, &m->f[f], masked, 0);
            putch(&w, '\n');
            if (s->mask == ISO_MASK_TLV)
                (void)put_tlv_list(&w, &m->f[f], masked, 0);
        }
    }
    out[w.len] = '\0';
    return w.full ? ISO_E_NOSPACE : (int)w.len;
}
