/* The one adapter between iso8583's stream framing (pure: headers in, sizes out) and at_stream
 * (common/stream.h): the framing function every ISO link's stream cuts its input with, and the
 * write that puts a packed message behind its header. */
#include "isonet.h"

#include "stream.h"

#include <stdio.h>

int isonet_frame_fn(void *arg, const uint8_t *buf, size_t avail, struct at_frame *fr, char *why,
                    size_t whycap)
{
    struct isonet_framing *f = arg;
    struct iso_frame got;
    struct iso_err e;
    int rc = iso_frame_parse(f->kind, f->max, buf, avail, &got, &e);
    if (rc < 0) {
        f->refused++;
        snprintf(why, whycap, "framing: %s", e.reason);
        return -1;
    }
    if (rc == ISO_FRAME_NEED_MORE) {
        fr->need = got.need;
        return 0;
    }
    fr->msg_off = got.msg_off;
    fr->msg_len = got.msg_len;
    fr->consume = got.consume;
    return 1;
}

int isonet_send(struct at_stream *s, const struct isonet_framing *f, const uint8_t *tpdu,
                const uint8_t *msg, size_t len)
{
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    struct iso_err e;
    if (!s || iso_frame_header(f->kind, f->max, len, tpdu, hdr, sizeof hdr, &e) != 0)
        return -1;
    return at_stream_write(s, hdr, iso_frame_header_len(f->kind), msg, len) != 0 ? -1 : 0;
}
