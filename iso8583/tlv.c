/* BER-TLV as EMV uses it in DE 55: a flat, order-preserving parser that yields views into the
 * input, and a builder that reproduces parsed input byte for byte (tag bytes and the received
 * length form, even a non-minimal long form, are kept). No allocation. */
#include "iso_internal.h"

#include <string.h>

int iso_tlv_constructed(uint32_t tag)
{
    uint32_t first = tag;
    while (first > 0xFF)
        first >>= 8;
    return (first & 0x20) != 0;
}

int iso_tlv_parse(const uint8_t *buf, size_t n, struct iso_tlv *items, size_t cap, size_t *count,
                  struct iso_err *err)
{
    if ((!buf && n) || !count || (!items && cap))
        return iso_fail(err, ISO_E_ARG, 55, 0, "NULL TLV buffer or item array");
    size_t pos = 0, k = 0;
    *count = 0;
    while (pos < n) {
        size_t start = pos;
        uint32_t tag = buf[pos++];
        if (tag == 0x00 || tag == 0xFF)
            return iso_fail(err, ISO_E_TLV, 55, start, "tag byte 0x%02X is not a valid tag",
                            (unsigned)tag);
        if ((tag & 0x1F) == 0x1F) {
            /* Subsequent tag bytes: bit 8 set means another follows. At most 4 tag bytes. */
            for (;;) {
                if (pos >= n)
                    return iso_fail(err, ISO_E_TLV, 55, start, "truncated tag");
                if (pos - start >= 4)
                    return iso_fail(err, ISO_E_TLV, 55, start, "tag longer than 4 bytes");
                uint8_t b = buf[pos++];
                tag = tag << 8 | b;
                if (!(b & 0x80))
                    break;
            }
        }
        uint8_t tag_len = (uint8_t)(pos - start);
        if (pos >= n)
            return iso_fail(err, ISO_E_TLV, 55, pos, "tag without a length");
        size_t lstart = pos, len;
        uint8_t l0 = buf[pos++];
        if (l0 < 0x80) {
            len = l0;
        } else if (l0 == 0x80) {
            return iso_fail(err, ISO_E_TLV, 55, lstart, "indefinite length not allowed");
        } else {
            size_t nb = l0 & 0x7F;
            if (nb > 4)
                return iso_fail(err, ISO_E_TLV, 55, lstart, "length of more than 4 bytes");
            if (nb > n - pos)
                return iso_fail(err, ISO_E_TLV, 55, lstart, "truncated length");
            len = 0;
            for (size_t i = 0; i < nb; i++)
                len = len << 8 | buf[pos++];
        }
        if (len > n - pos)
            return iso_fail(err, ISO_E_TLV, 55, lstart, "value runs past the end (%zu > %zu)", len,
                            n - pos);
        if (k >= cap)
            return iso_fail(err, ISO_E_TLV_CAP, 55, start, "more than %zu TLV items", cap);
        items[k].tag = tag;
        items[k].tag_len = tag_len;
        items[k].len_len = (uint8_t)(pos - lstart);
        items[k].value = buf + pos;
        items[k].len = len;
        k++;
        pos += len;
    }
    *count = k;
    return 0;
}

static size_t min_len_len(size_t len)
{
    if (len < 0x80)
        return 1;
    size_t nb = 0;
    for (size_t v = len; v; v >>= 8)
        nb++;
    return 1 + nb;
}

int iso_tlv_build(const struct iso_tlv *items, size_t count, uint8_t *out, size_t cap,
                  size_t *outlen, struct iso_err *err)
{
    if ((!items && count) || !outlen || (!out && cap))
        return iso_fail(err, ISO_E_ARG, 55, 0, "NULL TLV items or output");
    size_t pos = 0;
    for (size_t k = 0; k < count; k++) {
        const struct iso_tlv *t = &items[k];
        size_t tl = t->tag_len;
        if (!tl)
            for (tl = 1; tl < 4 && (t->tag >> (8 * tl)); tl++)
                ;
        if (tl > 4 || (tl < 4 && (t->tag >> (8 * tl))) || t->tag == 0)
            return iso_fail(err, ISO_E_TLV, 55, pos, "item %zu: tag does not fit its length", k);
        size_t minl = min_len_len(t->len);
        size_t ll = t->len_len ? t->len_len : minl;
        if (ll < minl || ll > 5)
            return iso_fail(err, ISO_E_TLV, 55, pos, "item %zu: length form cannot hold %zu", k,
                            t->len);
        if (t->len && !t->value)
            return iso_fail(err, ISO_E_ARG, 55, pos, "item %zu: NULL value", k);
        if (tl + ll + t->len > cap - pos)
            return iso_fail(err, ISO_E_NOSPACE, 55, pos, "TLV output buffer too small");
        for (size_t i = tl; i-- > 0;)
            out[pos++] = (uint8_t)(t->tag >> (8 * i));
        if (ll == 1) {
            out[pos++] = (uint8_t)t->len;
        } else {
            out[pos++] = (uint8_t)(0x80 | (ll - 1));
            for (size_t i = ll - 1; i-- > 0;)
                out[pos++] = (uint8_t)(t->len >> (8 * i));
        }
        if (t->len)
            memcpy(out + pos, t->value, t->len);
        pos += t->len;
    }
    *outlen = pos;
    return 0;
}

const struct iso_tlv *iso_tlv_find(const struct iso_tlv *items, size_t count, uint32_t tag)
{
    for (size_t i = 0; i < count; i++)
        if (items[i].tag == tag)
            return &items[i];
    return NULL;
}
