/* Stream framing: decides from the header alone how long the next frame is, so a reader can
 * refuse an oversized frame before buffering it, and never copies (offsets into the caller's
 * buffer). Also writes headers for outgoing messages. */
#include "iso_internal.h"

#include <string.h>

size_t iso_frame_header_len(enum iso_frame_kind kind)
{
    switch (kind) {
    case ISO_FRAME_2B:
        return 2;
    case ISO_FRAME_4A:
        return 4;
    case ISO_FRAME_TPDU:
        return 2 + ISO_TPDU_LEN;
    default:
        return 0;
    }
}

int iso_frame_parse(enum iso_frame_kind kind, size_t max_len, const uint8_t *buf, size_t avail,
                    struct iso_frame *fr, struct iso_err *err)
{
    if (!fr || (!buf && avail))
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL frame buffer");
    if (max_len == 0)
        max_len = ISO_FRAME_DEFAULT_MAX;
    memset(fr, 0, sizeof(*fr));
    if (kind == ISO_FRAME_NONE) {
        if (avail == 0) {
            fr->need = 1;
            return ISO_FRAME_NEED_MORE;
        }
        if (avail > max_len)
            return iso_fail(err, ISO_E_FRAME_TOO_LONG, -1, 0, "message of %zu bytes above %zu",
                            avail, max_len);
        fr->msg_len = fr->consume = avail;
        return ISO_FRAME_READY;
    }
    size_t hlen = iso_frame_header_len(kind);
    if (hlen == 0)
        return iso_fail(err, ISO_E_ARG, -1, 0, "unknown frame kind");
    size_t lenbytes = kind == ISO_FRAME_4A ? 4 : 2;
    if (avail < lenbytes) {
        fr->need = hlen;
        return ISO_FRAME_NEED_MORE;
    }
    size_t n = 0;
    if (kind == ISO_FRAME_4A) {
        for (size_t i = 0; i < 4; i++) {
            if (buf[i] < '0' || buf[i] > '9')
                return iso_fail(err, ISO_E_FRAME_HEADER, -1, i,
                                "non-digit in the 4-digit length header");
            n = n * 10 + (size_t)(buf[i] - '0');
        }
    } else {
        n = (size_t)buf[0] << 8 | buf[1];
    }
    if (n > max_len)
        return iso_fail(err, ISO_E_FRAME_TOO_LONG, -1, 0, "frame of %zu bytes above maximum %zu", n,
                        max_len);
    size_t body = n;
    if (kind == ISO_FRAME_TPDU) {
        if (n < ISO_TPDU_LEN)
            return iso_fail(err, ISO_E_FRAME_HEADER, -1, 0,
                            "length %zu too short to hold the 5-byte TPDU", n);
        body = n - ISO_TPDU_LEN;
    }
    if (body == 0)
        return iso_fail(err, ISO_E_EMPTY, -1, 0, "zero-length frame");
    size_t total = lenbytes + n;
    if (avail < total) {
        fr->need = total;
        return ISO_FRAME_NEED_MORE;
    }
    fr->tpdu_off = kind == ISO_FRAME_TPDU ? 2 : 0;
    fr->msg_off = hlen;
    fr->msg_len = body;
    fr->consume = total;
    return ISO_FRAME_READY;
}

int iso_frame_header(enum iso_frame_kind kind, size_t max_len, size_t msg_len, const uint8_t *tpdu,
                     uint8_t *out, size_t cap, struct iso_err *err)
{
    if (max_len == 0)
        max_len = ISO_FRAME_DEFAULT_MAX;
    size_t hlen = iso_frame_header_len(kind);
    if (kind == ISO_FRAME_NONE)
        return msg_len <= max_len ? 0
                                  : iso_fail(err, ISO_E_FRAME_TOO_LONG, -1, 0,
                                             "message of %zu bytes above %zu", msg_len, max_len);
    if (hlen == 0 || !out)
        return iso_fail(err, ISO_E_ARG, -1, 0, "unknown frame kind or NULL output");
    if (cap < hlen)
        return iso_fail(err, ISO_E_NOSPACE, -1, 0, "header buffer too small");
    if (msg_len == 0)
        return iso_fail(err, ISO_E_EMPTY, -1, 0, "zero-length message");
    size_t n = msg_len + (kind == ISO_FRAME_TPDU ? ISO_TPDU_LEN : 0);
    size_t limit = kind == ISO_FRAME_4A ? 9999 : 0xFFFF;
    if (n > max_len || n > limit)
        return iso_fail(err, ISO_E_FRAME_TOO_LONG, -1, 0, "frame of %zu bytes above maximum %zu", n,
                        max_len < limit ? max_len : limit);
    if (kind == ISO_FRAME_4A) {
        for (int i = 3; i >= 0; i--, n /= 10)
            out[i] = (uint8_t)('0' + n % 10);
    } else {
        out[0] = (uint8_t)(n >> 8);
        out[1] = (uint8_t)n;
    }
    if (kind == ISO_FRAME_TPDU) {
        if (!tpdu)
            return iso_fail(err, ISO_E_ARG, -1, 0, "TPDU framing needs a TPDU");
        memcpy(out + 2, tpdu, ISO_TPDU_LEN);
    }
    return 0;
}

void iso_tpdu_swap(uint8_t tpdu[ISO_TPDU_LEN])
{
    uint8_t d0 = tpdu[1], d1 = tpdu[2];
    tpdu[1] = tpdu[3];
    tpdu[2] = tpdu[4];
    tpdu[3] = d0;
    tpdu[4] = d1;
}

int iso_frame_kind_parse(const char *name, enum iso_frame_kind *out)
{
    static const struct {
        const char *name;
        enum iso_frame_kind kind;
    } kinds[] = { { "2b", ISO_FRAME_2B },
                  { "4a", ISO_FRAME_4A },
                  { "tpdu", ISO_FRAME_TPDU },
                  { "none", ISO_FRAME_NONE } };
    if (!name || !out)
        return ISO_E_ARG;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].name, name) == 0) {
            *out = kinds[i].kind;
            return 0;
        }
    return ISO_E_NOT_FOUND;
}
