/* The MAC of an ISO 8583 message: the one rule for its field (DE 64 without a secondary bitmap,
 * DE 128 with one, always the last field), the placeholder a message being built carries, and
 * where the MAC's bytes sit once the message is packed — so a builder patches them in place and a
 * receiver knows which bytes the MAC covers without re-packing what it received. */
#include "isonet.h"

#include "hex.h"

#include <stdio.h>
#include <string.h>

static int fail(struct iso_err *err, int code, int field, const char *reason)
{
    if (err) {
        err->code = code;
        err->field = field;
        err->offset = 0;
        snprintf(err->reason, sizeof err->reason, "%s", reason);
    }
    return code;
}

int isonet_mac_field(const struct iso_msg *m)
{
    if (iso_next(m, 128) != 0 || (m->flags & ISO_MSG_TERTIARY))
        return ISO_E_UNDEFINED;
    return iso_next(m, 64) != 0 || (m->flags & ISO_MSG_SECONDARY) ? 128 : 64;
}

int isonet_mac_reserve(struct iso_msg *m)
{
    static const uint8_t placeholder[ISONET_MAC_LEN];
    iso_unset(m, 64);
    iso_unset(m, 128);
    int f = isonet_mac_field(m);
    if (f < 0)
        return f;
    int rc = iso_set(m, f, placeholder, sizeof placeholder);
    return rc != 0 ? rc : f;
}

/* Wire bytes of the 8-byte MAC field in dialect d (16 as hex, 8 raw), or 0 when d defines the
 * field some other way. */
static size_t wire_len(const struct iso_dialect *d, int field)
{
    const struct iso_field_spec *s = &d->field[field];
    if (s->type != ISO_T_B || s->len_kind != ISO_LEN_FIXED || s->max_len != ISONET_MAC_LEN)
        return 0;
    if (s->data_enc == ISO_ENC_HEX)
        return 2 * ISONET_MAC_LEN;
    return s->data_enc == ISO_ENC_BINARY ? ISONET_MAC_LEN : 0;
}

/* A packed message ends with its last field, and the codec consumes a whole frame (or writes
 * one) field by field: the MAC's wire bytes are the last ones. */
int isonet_mac_locate(const struct iso_dialect *d, const struct iso_msg *m, size_t len,
                      struct isonet_mac *at)
{
    memset(at, 0, sizeof *at);
    int f = isonet_mac_field(m);
    if (f < 0)
        return f;
    at->field = f;
    size_t n = 0;
    const uint8_t *v = iso_get(m, f, &n);
    if (!v || n != ISONET_MAC_LEN || iso_next(m, f) != 0)
        return ISO_E_UNDEFINED;
    size_t wire = wire_len(d, f);
    if (wire == 0)
        return ISO_E_SPEC;
    if (len < wire)
        return ISO_E_TRUNCATED;
    at->off = len - wire;
    at->wire = wire;
    at->value = v;
    return 0;
}

int isonet_pack_mac(const struct iso_dialect *d, struct iso_msg *m, uint8_t *out, size_t cap,
                    size_t *outlen, struct isonet_mac *at, struct iso_err *err)
{
    int f = isonet_mac_reserve(m);
    if (f < 0)
        return fail(err, f, 1, "no MAC field for a message with a tertiary bitmap");
    int rc = iso_pack(d, m, out, cap, outlen, err);
    if (rc != 0)
        return rc;
    rc = isonet_mac_locate(d, m, *outlen, at);
    if (rc != 0)
        return fail(err, rc, f, "the dialect's MAC field is not b 8 (hex or binary)");
    return 0;
}

void isonet_mac_patch(uint8_t *packed, const struct isonet_mac *at,
                      const uint8_t mac[ISONET_MAC_LEN])
{
    if (at->wire == 2 * ISONET_MAC_LEN) {
        char hex[2 * ISONET_MAC_LEN + 1];
        at_hex_encode(mac, ISONET_MAC_LEN, hex);
        memcpy(packed + at->off, hex, 2 * ISONET_MAC_LEN);
    } else {
        memcpy(packed + at->off, mac, ISONET_MAC_LEN);
    }
}
