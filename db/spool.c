/* The journal spool format: an 8-byte magic, then frames of [u32 length][u32 CRC-32C][payload],
 * little-endian, appended and fsync'd in groups while PostgreSQL is unreachable. A frame cut by
 * a crash (torn tail) is ignored — it was never acknowledged; a CRC mismatch is corruption. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 2 appended issuer_transmission_time; 3 the record kind, settle_inflight, the sealed PAN and the
 * reversal reason (records of versions 1 and 2 decode as ANSWERs). */
#define SPOOL_VERSION 3

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. */
uint32_t spool_crc32c(const void *data, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    while (n--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
};

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
    if (w->n + n > w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void w_u64(struct wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 8);
}

/* A string field: u8 length + bytes, bounded by the field's size in the record. */
static void w_str(struct wbuf *w, const char *s, size_t field_size)
{
    size_t n = strnlen(s, field_size - 1);
    uint8_t len = (uint8_t)n;
    w_bytes(w, &len, 1);
    w_bytes(w, s, n);
}

struct rbuf {
    const uint8_t *p;
    size_t n, off;
    bool bad;
};

static void r_bytes(struct rbuf *r, void *dst, size_t n)
{
    if (r->off + n > r->n) {
        r->bad = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->off, n);
    r->off += n;
}

static uint64_t r_u64(struct rbuf *r)
{
    uint8_t b[8];
    r_bytes(r, b, 8);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void r_str(struct rbuf *r, char *dst, size_t field_size)
{
    uint8_t len = 0;
    r_bytes(r, &len, 1);
    if (len >= field_size) {
        r->bad = true;
        dst[0] = '\0';
        return;
    }
    r_bytes(r, dst, len);
    dst[len] = '\0';
    if (memchr(dst, '\0', len))
        r->bad = true;
}

/* The field order of payload version 1. Adding a field means a new version number. */
#define SPOOL_STRINGS(X)                                                                           \
    X(request_date)                                                                                \
    X(acquirer_id)                                                                                 \
    X(terminal_id)                                                                                 \
    X(stan)                                                                                        \
    X(transmission_time)                                                                           \
    X(mti)                                                                                         \
    X(rrn)                                                                                         \
    X(issuer_id)                                                                                   \
    X(issuer_stan)                                                                                 \
    X(processing_code)                                                                             \
    X(response_code)                                                                               \
    X(auth_code)                                                                                   \
    X(pan_masked)                                                                                  \
    X(original_stan)                                                                               \
    X(original_transmission_time)

size_t spool_encode(const struct db_auth_record *rec, uint8_t *buf, size_t cap)
{
    struct wbuf w = { .p = buf, .cap = cap };
    uint8_t v = SPOOL_VERSION;
    w_bytes(&w, &v, 1);
#define W_STR(f) w_str(&w, rec->f, sizeof rec->f);
    SPOOL_STRINGS(W_STR)
#undef W_STR
    w_u64(&w, (uint64_t)rec->amount_minor);
    w_u64(&w, (uint64_t)(int64_t)rec->currency);
    w_u64(&w, (uint64_t)rec->outcome);
    uint8_t has = rec->has_pan_hmac ? 1 : 0;
    w_bytes(&w, &has, 1);
    if (has)
        w_bytes(&w, rec->pan_hmac, sizeof rec->pan_hmac);
    w_u64(&w, rec->created_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_total_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_mac_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_pin_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_issuer_us);
    w_str(&w, rec->issuer_transmission_time, sizeof rec->issuer_transmission_time);
    uint8_t b[3] = { (uint8_t)rec->kind, rec->settle_inflight ? 1 : 0,
                     rec->pan_sealed_len <= DB_PAN_SEALED_MAX ? rec->pan_sealed_len : 0 };
    w_bytes(&w, b, 3);
    w_bytes(&w, rec->pan_sealed, b[2]);
    w_str(&w, rec->reason, sizeof rec->reason);
    return w.overflow ? 0 : w.n;
}

int spool_decode(const uint8_t *buf, size_t n, struct db_auth_record *rec)
{
    struct rbuf r = { .p = buf, .n = n };
    uint8_t v = 0;
    db_auth_record_init(rec);
    r_bytes(&r, &v, 1);
    if (v < 1 || v > SPOOL_VERSION)
        return -1;
#define R_STR(f) r_str(&r, rec->f, sizeof rec->f);
    SPOOL_STRINGS(R_STR)
#undef R_STR
    rec->amount_minor = (int64_t)r_u64(&r);
    rec->currency = (int32_t)(int64_t)r_u64(&r);
    uint64_t outcome = r_u64(&r);
    if (outcome >= DB_OUTCOME_max)
        return -1;
    rec->outcome = (enum db_outcome)outcome;
    uint8_t has = 0;
    r_bytes(&r, &has, 1);
    if (has > 1)
        return -1;
    rec->has_pan_hmac = has;
    if (has)
        r_bytes(&r, rec->pan_hmac, sizeof rec->pan_hmac);
    rec->created_us = r_u64(&r);
    rec->lat_total_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_mac_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_pin_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_issuer_us = (int32_t)(int64_t)r_u64(&r);
    if (v >= 2)
        r_str(&r, rec->issuer_transmission_time, sizeof rec->issuer_transmission_time);
    if (v >= 3) {
        uint8_t b[3] = { 0, 0, 0 };
        r_bytes(&r, b, 3);
        if (b[0] >= DB_REC_max || b[1] > 1 || b[2] > DB_PAN_SEALED_MAX)
            return -1;
        rec->kind = (enum db_rec_kind)b[0];
        rec->settle_inflight = b[1];
        rec->pan_sealed_len = b[2];
        r_bytes(&r, rec->pan_sealed, b[2]);
        r_str(&r, rec->reason, sizeof rec->reason);
    }
    if (r.bad || r.off != n)
        return -1;
    return 0;
}

size_t spool_frame(const struct db_auth_record *rec, uint8_t *out, size_t cap)
{
    if (cap < SPOOL_FRAME_HDR)
        return 0;
    size_t n = spool_encode(rec, out + SPOOL_FRAME_HDR, cap - SPOOL_FRAME_HDR);
    if (n == 0)
        return 0;
    put_u32(out, (uint32_t)n);
    put_u32(out + 4, spool_crc32c(out + SPOOL_FRAME_HDR, n));
    return SPOOL_FRAME_HDR + n;
}

int spool_reader_open(struct spool_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f)
        return errno == ENOENT ? 1 : -1;
    char magic[SPOOL_MAGIC_LEN];
    size_t got = fread(magic, 1, sizeof magic, r->f);
    if (got == 0 && feof(r->f)) { /* created but the magic never written: empty */
        r->offset = 0;
        return 0;
    }
    if (got != sizeof magic || memcmp(magic, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0) {
        fclose(r->f);
        r->f = NULL;
        return -1;
    }
    r->offset = SPOOL_MAGIC_LEN;
    return 0;
}

enum spool_read_status spool_reader_next(struct spool_reader *r, struct db_auth_record *rec)
{
    uint8_t hdr[SPOOL_FRAME_HDR];
    uint8_t payload[SPOOL_MAX_RECORD];
    size_t got = fread(hdr, 1, sizeof hdr, r->f);
    if (got == 0)
        return SPOOL_READ_END;
    if (got < sizeof hdr)
        return SPOOL_READ_TORN;
    uint32_t len = get_u32(hdr), crc = get_u32(hdr + 4);
    if (len == 0 || len > SPOOL_MAX_RECORD) {
        /* An impossible length: a torn header of zeros at the very end, or corruption. */
        uint8_t probe;
        if (len == 0 && fread(&probe, 1, 1, r->f) == 0)
            return SPOOL_READ_TORN;
        return SPOOL_READ_CORRUPT;
    }
    got = fread(payload, 1, len, r->f);
    if (got < len)
        return SPOOL_READ_TORN;
    if (spool_crc32c(payload, len) != crc) {
        /* A mismatch in the very last frame is a write cut short (pages not all on disk). */
        uint8_t probe;
        if (fread(&probe, 1, 1, r->f) == 0)
            return SPOOL_READ_TORN;
        return SPOOL_READ_CORRUPT;
    }
    if (spool_decode(payload, len, rec) != 0)
        return SPOOL_READ_CORRUPT;
    r->offset += SPOOL_FRAME_HDR + len;
    return SPOOL_READ_OK;
}

void spool_reader_close(struct spool_reader *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
}
