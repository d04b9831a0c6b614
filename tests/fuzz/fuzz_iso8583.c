/* libFuzzer target over the whole receive path of libatlas_iso8583: framing, unpack in the
 * dialect picked by the first input byte, BER-TLV of DE 55 and of the raw input, masked
 * describe, and the invariant that a message that unpacks re-packs into a frame that unpacks
 * to the same MTI and fields (and TLV that parses rebuilds byte-identical). With bit 7 of the
 * first byte set, the input is instead "<dialect spec text> NUL <message>": the spec-file
 * parser is fuzzed and any table it accepts drives the same unpack/re-pack checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iso8583.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t arena1[ISO_ARENA_FOR(9000)], arena2[ISO_ARENA_FOR(70000)];
static uint8_t packed[70000];
static char text[1 << 18];

static void check_tlv(const uint8_t *p, size_t n)
{
    struct iso_tlv items[64];
    size_t count = 0, outlen = 0;
    static uint8_t out[70000];
    if (iso_tlv_parse(p, n, items, 64, &count, NULL) != 0)
        return;
    if (iso_tlv_build(items, count, out, sizeof(out), &outlen, NULL) != 0)
        abort();
    if (outlen != n || memcmp(out, p, n) != 0)
        abort();
}

static void check_message(const struct iso_dialect *d, const uint8_t *msg, size_t len)
{
    static struct iso_msg m, again;
    iso_msg_init(&m, arena1, sizeof(arena1));
    if (len > 9000)
        return;
    if (iso_unpack(d, msg, len, &m, NULL) != 0)
        return;
    (void)iso_describe(d, &m, 0, text, sizeof(text));
    (void)iso_describe(d, &m, ISO_DESCRIBE_JSON, text, sizeof(text));
    size_t n55;
    const uint8_t *de55 = iso_get(&m, 55, &n55);
    if (de55)
        check_tlv(de55, n55);
    size_t outlen = 0;
    struct iso_err err;
    if (iso_pack(d, &m, packed, sizeof(packed), &outlen, &err) != 0) {
        fprintf(stderr, "repack failed: %s (field %d)\n", err.reason, err.field);
        abort();
    }
    iso_msg_init(&again, arena2, sizeof(arena2));
    if (iso_unpack(d, packed, outlen, &again, &err) != 0) {
        fprintf(stderr, "re-unpack failed: %s (field %d)\n", err.reason, err.field);
        abort();
    }
    if (memcmp(m.mti, again.mti, 4) != 0 || m.flags != again.flags)
        abort();
    for (int w = 0; w < 3; w++)
        if (m.bits[w] != again.bits[w])
            abort();
    for (int f = iso_next(&m, 0); f; f = iso_next(&m, f))
        if (m.f[f].len != again.f[f].len ||
            (m.f[f].len && memcmp(m.f[f].ptr, again.f[f].ptr, m.f[f].len) != 0))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* byte 0: low 2 bits dialect, next 2 bits framing */
    if (data[0] & 0x80) {
        static struct iso_dialect custom;
        const uint8_t *nul = memchr(data + 1, 0, size - 1);
        size_t slen = nul ? (size_t)(nul - data - 1) : size - 1;
        if (iso_dialect_parse((const char *)data + 1, slen, &custom, NULL) != 0)
            return 0;
        if (iso_dialect_validate(&custom, NULL) != 0)
            abort(); /* parse must only return validated tables */
        if (nul) {
            size_t mlen = size - 1 - slen - 1;
            uint8_t *msg = malloc(mlen ? mlen : 1);
            if (!msg)
                return 0;
            memcpy(msg, nul + 1, mlen);
            check_message(&custom, msg, mlen);
            free(msg);
        }
        return 0;
    }
    const struct iso_dialect *d = iso_dialect_find(iso_dialect_names[data[0] & 3]);
    static const enum iso_frame_kind kinds[4] = { ISO_FRAME_NONE, ISO_FRAME_2B, ISO_FRAME_4A,
                                                  ISO_FRAME_TPDU };
    enum iso_frame_kind kind = kinds[(data[0] >> 2) & 3];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    check_tlv(p, n);
    /* Copy to an exact-size heap block so any over-read is caught by ASan. */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, p, n);
    size_t pos = 0;
    while (pos < n) {
        struct iso_frame fr;
        int rc = iso_frame_parse(kind, 0, buf + pos, n - pos, &fr, NULL);
        if (rc != ISO_FRAME_READY)
            break;
        if (fr.consume == 0 || fr.msg_off + fr.msg_len > n - pos)
            abort();
        check_message(d, buf + pos + fr.msg_off, fr.msg_len);
        pos += fr.consume;
    }
    free(buf);
    return 0;
}
