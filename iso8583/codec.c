/* The ISO 8583 codec: message model, bitmaps, pack and unpack. Entirely table-driven by a
 * struct iso_dialect — there is no per-dialect code path. Every length prefix goes through
 * read_prefix() (and its digit helpers), every value through check_chars(); unpack never reads
 * past the end of the frame whatever the prefixes claim. */
#include "iso_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define TOP_BIT (UINT64_C(1) << 63)

int iso_fail(struct iso_err *err, int code, int field, size_t offset, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->field = field;
        err->offset = offset;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *iso_strerror(int code)
{
    switch (code) {
    case ISO_OK:
        return "ok";
    case ISO_E_ARG:
        return "invalid argument";
    case ISO_E_EMPTY:
        return "empty message";
    case ISO_E_TRUNCATED:
        return "truncated";
    case ISO_E_MTI:
        return "bad MTI";
    case ISO_E_BITMAP:
        return "bad bitmap";
    case ISO_E_UNDEFINED:
        return "field not defined by the dialect";
    case ISO_E_LENGTH:
        return "bad length prefix";
    case ISO_E_TOO_LONG:
        return "length above maximum";
    case ISO_E_FIXED_LENGTH:
        return "wrong length for a fixed field";
    case ISO_E_CHARSET:
        return "character not allowed";
    case ISO_E_BCD:
        return "bad BCD";
    case ISO_E_TRAILING:
        return "trailing bytes";
    case ISO_E_NOSPACE:
        return "output buffer too small";
    case ISO_E_ARENA:
        return "arena too small";
    case ISO_E_TLV:
        return "bad BER-TLV";
    case ISO_E_TLV_CAP:
        return "too many TLV items";
    case ISO_E_FRAME_TOO_LONG:
        return "frame too long";
    case ISO_E_FRAME_HEADER:
        return "bad frame header";
    case ISO_E_SPEC:
        return "bad dialect spec";
    case ISO_E_IO:
        return "cannot read dialect spec";
    case ISO_E_NOT_FOUND:
        return "unknown dialect";
    }
    return "unknown error";
}

/* ---- message model ------------------------------------------------------------------------ */

static inline int field_ok(int f)
{
    return f >= 2 && f <= ISO_MAX_FIELD;
}

static inline uint64_t field_bit(int f)
{
    return UINT64_C(1) << (63 - ((f - 1) & 63));
}

void iso_msg_init(struct iso_msg *m, uint8_t *arena, size_t arena_cap)
{
    memset(m->mti, '0', sizeof(m->mti));
    m->flags = 0;
    m->bits[0] = m->bits[1] = m->bits[2] = 0;
    m->arena = arena;
    m->arena_cap = arena ? arena_cap : 0;
    m->arena_used = 0;
}

void iso_msg_clear(struct iso_msg *m)
{
    m->flags = 0;
    m->bits[0] = m->bits[1] = m->bits[2] = 0;
    m->arena_used = 0;
}

/* n bytes of the message arena, or NULL when full. A zero-length take returns a valid non-NULL
 * pointer (present empty fields must never look absent). */
static uint8_t *arena_take(struct iso_msg *m, size_t n)
{
    if (n == 0)
        return (uint8_t *)m->mti; /* any valid address; nothing is written */
    if (m->arena_cap - m->arena_used < n)
        return NULL;
    uint8_t *p = m->arena + m->arena_used;
    m->arena_used += n;
    return p;
}

int iso_set_mti(struct iso_msg *m, const char *mti)
{
    if (!m || !mti)
        return ISO_E_ARG;
    for (int i = 0; i < 4; i++)
        if (mti[i] < '0' || mti[i] > '9')
            return ISO_E_MTI;
    if (mti[4] != '\0')
        return ISO_E_MTI;
    memcpy(m->mti, mti, 4);
    return 0;
}

int iso_set(struct iso_msg *m, int field, const void *p, size_t len)
{
    if (!m || !field_ok(field) || (!p && len) || len > 9999)
        return ISO_E_ARG;
    m->f[field].ptr = p ? p : (const uint8_t *)"";
    m->f[field].len = (uint32_t)len;
    m->bits[(field - 1) >> 6] |= field_bit(field);
    return 0;
}

int iso_set_copy(struct iso_msg *m, int field, const void *p, size_t len)
{
    if (!m || !field_ok(field) || (!p && len) || len > 9999)
        return ISO_E_ARG;
    uint8_t *dst = arena_take(m, len);
    if (!dst)
        return ISO_E_ARENA;
    if (len)
        memcpy(dst, p, len);
    return iso_set(m, field, dst, len);
}

int iso_set_str(struct iso_msg *m, int field, const char *s)
{
    if (!s)
        return ISO_E_ARG;
    return iso_set_copy(m, field, s, strlen(s));
}

const uint8_t *iso_get(const struct iso_msg *m, int field, size_t *len)
{
    if (!iso_has(m, field))
        return NULL;
    if (len)
        *len = m->f[field].len;
    return m->f[field].ptr;
}

int iso_has(const struct iso_msg *m, int field)
{
    if (!m || !field_ok(field))
        return 0;
    return (m->bits[(field - 1) >> 6] & field_bit(field)) != 0;
}

void iso_unset(struct iso_msg *m, int field)
{
    if (m && field_ok(field))
        m->bits[(field - 1) >> 6] &= ~field_bit(field);
}

int iso_next(const struct iso_msg *m, int after)
{
    int start = after < 1 ? 2 : after + 1; /* field 1 is never a data field */
    for (int f = start; f <= ISO_MAX_FIELD;) {
        int w = (f - 1) >> 6;
        uint64_t word = m->bits[w] & (~UINT64_C(0) >> ((f - 1) & 63));
        if (word)
            return w * 64 + __builtin_clzll(word) + 1;
        f = (w + 1) * 64 + 1;
    }
    return 0;
}

void iso_msg_copy(struct iso_msg *dst, const struct iso_msg *src)
{
    if (dst == src)
        return;
    memcpy(dst->mti, src->mti, 4);
    dst->flags = src->flags;
    for (int w = 0; w < 3; w++)
        dst->bits[w] = src->bits[w];
    for (int f = iso_next(src, 0); f; f = iso_next(src, f))
        dst->f[f] = src->f[f];
    dst->arena_used = 0;
}

int iso_msg_copy_deep(struct iso_msg *dst, const struct iso_msg *src, struct iso_err *err)
{
    if (dst == src)
        return iso_fail(err, ISO_E_ARG, -1, 0, "source and destination are the same message");
    iso_msg_copy(dst, src);
    for (int f = iso_next(src, 0); f; f = iso_next(src, f)) {
        int rc = iso_set_copy(dst, f, src->f[f].ptr, src->f[f].len);
        if (rc)
            return iso_fail(err, rc, f, 0, "arena too small to copy field %d (%u bytes)", f,
                            (unsigned)src->f[f].len);
    }
    return 0;
}

/* ---- shared field helpers ----------------------------------------------------------------- */

static const uint8_t prefix_digits[4] = { 0, 2, 3, 4 };

static const char *const type_names[] = {
    "none", "n", "a", "an", "ans", "ns", "as", "z", "x+n", "b"
};

static const uint8_t type_class[] = {
    [ISO_T_N] = ISO_C_DIGIT,
    [ISO_T_A] = ISO_C_ALPHA | ISO_C_SPACE,
    [ISO_T_AN] = ISO_C_ALPHA | ISO_C_DIGIT | ISO_C_SPACE,
    [ISO_T_ANS] = ISO_C_ALPHA | ISO_C_DIGIT | ISO_C_SPACE | ISO_C_SPECIAL,
    [ISO_T_NS] = ISO_C_DIGIT | ISO_C_SPACE | ISO_C_SPECIAL,
    [ISO_T_AS] = ISO_C_ALPHA | ISO_C_SPACE | ISO_C_SPECIAL,
    [ISO_T_Z] = ISO_C_DIGIT | ISO_C_ZSEP,
    [ISO_T_XN] = ISO_C_DIGIT,
};

/* Bytes a prefix of this kind/encoding occupies on the wire. */
static inline size_t prefix_size(const struct iso_field_spec *s)
{
    if (s->len_kind == ISO_LEN_FIXED)
        return 0;
    switch (s->len_enc) {
    case ISO_ENC_BCD:
    case ISO_ENC_BINARY:
        return s->len_kind == ISO_LEN_LL ? 1 : 2;
    default:
        return prefix_digits[s->len_kind];
    }
}

/* Wire bytes of a value of canonical length n. */
static inline size_t wire_size(const struct iso_field_spec *s, size_t n)
{
    switch (s->data_enc) {
    case ISO_ENC_HEX:
        return 2 * n;
    case ISO_ENC_BCD:
        return s->type == ISO_T_XN ? 1 + n / 2 : (n + 1) / 2;
    default:
        return n;
    }
}

/* The one strict parser of character-coded decimal numbers: n bytes, each base..base+9
 * ('0' for ASCII, 0xF0 for EBCDIC). Returns 0 or -1 (non-digit at *bad). */
static int parse_digits(const uint8_t *p, size_t n, uint8_t base, size_t *out, size_t *bad)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[i] - base);
        if (d > 9) {
            *bad = i;
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The one strict parser of packed-BCD numbers: n bytes, every nibble 0-9. */
static int parse_bcd(const uint8_t *p, size_t n, size_t *out, size_t *bad)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = p[i] >> 4, lo = p[i] & 0xF;
        if (hi > 9 || lo > 9) {
            *bad = i;
            return -1;
        }
        v = v * 100 + hi * 10 + lo;
    }
    *out = v;
    return 0;
}

/* Checks a canonical value against its type's character class. Returns 0 or the index of the
 * first offending byte + 1. */
static size_t check_chars(uint8_t type, const uint8_t *p, size_t n)
{
    if (type == ISO_T_B)
        return 0;
    size_t i = 0;
    if (type == ISO_T_XN) {
        if (n < 2 || (p[0] != 'C' && p[0] != 'D'))
            return 1;
        i = 1;
    }
    /* Fast path, 8 bytes per step, for the two classes that carry most bytes: digits (n) and
     * printable ASCII (ans). Any doubt falls through to the exact per-byte scan below. */
    const uint64_t ones = UINT64_C(0x0101010101010101), high = ones * 0x80;
    size_t j = i;
    if (type == ISO_T_N) {
        for (; j + 8 <= n; j += 8) {
            uint64_t x;
            memcpy(&x, p + j, 8);
            /* each byte: high nibble 3 and low nibble + 6 not carrying, i.e. '0'..'9' */
            if ((x & ones * 0xF0) != ones * 0x30 ||
                ((x + ones * 0x06) & ones * 0xF0) != ones * 0x30)
                break;
        }
    } else if (type == ISO_T_ANS) {
        for (; j + 8 <= n; j += 8) {
            uint64_t x;
            memcpy(&x, p + j, 8);
            /* each byte: below 0x80, at least 0x20 (b + 0x60 sets bit 7), at most 0x7E */
            if ((x & high) || ((x + ones * 0x60) & high) != high || ((x + ones) & high))
                break;
        }
    }
    uint8_t allowed = type_class[type];
    for (; j < n; j++)
        if (!(iso_cls[p[j]] & allowed))
            break;
    if (j == n)
        return 0;
    for (; i < n; i++)
        if (!(iso_cls[p[i]] & allowed))
            return i + 1;
    return 0;
}

/* Reads the length prefix at frame[*pos] into *flen and advances *pos. */
static int read_prefix(const struct iso_field_spec *s, int f, const uint8_t *frame, size_t len,
                       size_t *pos, size_t *flen, struct iso_err *err)
{
    size_t psz = prefix_size(s), at = *pos, bad = 0, v = 0;
    if (psz > len - at)
        return iso_fail(err, ISO_E_TRUNCATED, f, at,
                        "field %d: message ends inside the length prefix", f);
    const uint8_t *p = frame + at;
    int rc = 0;
    switch (s->len_enc) {
    case ISO_ENC_ASCII:
        rc = parse_digits(p, psz, '0', &v, &bad);
        break;
    case ISO_ENC_EBCDIC:
        rc = parse_digits(p, psz, 0xF0, &v, &bad);
        break;
    case ISO_ENC_BCD:
        rc = parse_bcd(p, psz, &v, &bad);
        break;
    default:
        v = psz == 1 ? p[0] : ((size_t)p[0] << 8 | p[1]);
        break;
    }
    if (rc)
        return iso_fail(err, ISO_E_LENGTH, f, at + bad, "field %d: non-digit in length prefix", f);
    if (v > s->max_len)
        return iso_fail(err, ISO_E_TOO_LONG, f, at, "field %d: length %zu above maximum %u", f, v,
                        (unsigned)s->max_len);
    *flen = v;
    *pos = at + psz;
    return 0;
}

/* One BCD nibble as its canonical character: a digit, '=' for nibble D in z data, else 0. */
static inline uint8_t bcd_char(unsigned v, int zsep)
{
    if (v <= 9)
        return (uint8_t)('0' + v);
    return (v == 0xD && zsep) ? '=' : 0;
}

/* Decodes ndig BCD digits at p (pad nibble per rule when ndig is odd) into out as ASCII; z
 * allows nibble D (rendered '='). Returns 0, or -1 with *bad = index of the offending byte. */
static int bcd_decode(const uint8_t *p, size_t ndig, uint8_t pad, int zsep, uint8_t *out,
                      size_t *bad)
{
    unsigned padv = (pad == ISO_PAD_LEFTF || pad == ISO_PAD_RIGHTF) ? 0xF : 0;
    int left = (pad == ISO_PAD_LEFT0 || pad == ISO_PAD_LEFTF);
    size_t b = 0, o = 0;
    if ((ndig & 1) && left) {
        if ((p[0] >> 4) != padv || !(out[o++] = bcd_char(p[0] & 0xF, zsep))) {
            *bad = 0;
            return -1;
        }
        b = 1;
    }
    for (; o + 1 < ndig; b++) {
        uint8_t hi = bcd_char(p[b] >> 4, zsep), lo = bcd_char(p[b] & 0xF, zsep);
        if (!hi || !lo) {
            *bad = b;
            return -1;
        }
        out[o++] = hi;
        out[o++] = lo;
    }
    if (o < ndig) { /* odd, right-padded: last byte is digit + pad */
        if ((p[b] & 0xF) != padv || !(out[o++] = bcd_char(p[b] >> 4, zsep))) {
            *bad = b;
            return -1;
        }
    }
    return 0;
}

static inline unsigned bcd_nibble(uint8_t c)
{
    return c <= '9' ? (unsigned)(c - '0') : 0xD; /* '=' or 'D' (validated before) */
}

/* Encodes ndig ASCII digits ('=' / 'D' → nibble D) as BCD with the pad rule. */
static void bcd_encode(const uint8_t *in, size_t ndig, uint8_t pad, uint8_t *out)
{
    unsigned padv = (pad == ISO_PAD_LEFTF || pad == ISO_PAD_RIGHTF) ? 0xF : 0;
    size_t i = 0, o = 0;
    if ((ndig & 1) && (pad == ISO_PAD_LEFT0 || pad == ISO_PAD_LEFTF)) {
        out[o++] = (uint8_t)(padv << 4 | bcd_nibble(in[0]));
        i = 1;
    }
    for (; i + 1 < ndig; i += 2)
        out[o++] = (uint8_t)(bcd_nibble(in[i]) << 4 | bcd_nibble(in[i + 1]));
    if (i < ndig)
        out[o] = (uint8_t)(bcd_nibble(in[i]) << 4 | padv);
}

/* ---- hex text <-> bytes, 16 bytes per step where SSE2 exists -------------------------------
 * b fields travel as hex text in ascii87 (DE 55 is ~400 characters), so this is the hottest
 * loop of that dialect. Both helpers return how many bytes they handled; the scalar loops in
 * the callers finish the tail and pinpoint any invalid character. */
#if defined(__SSE2__)
static size_t hex_encode_fast(const uint8_t *in, size_t n, uint8_t *out)
{
    const __m128i m0f = _mm_set1_epi8(0x0F), nine = _mm_set1_epi8(9), seven = _mm_set1_epi8(7),
                  zero = _mm_set1_epi8('0');
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), m0f), lo = _mm_and_si128(x, m0f);
        __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
        a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), seven));
        b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), seven));
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i), a);
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i + 16), b);
    }
    return i;
}

/* 16 hex characters → 16 nibble values; 0 if any is not [0-9A-Fa-f]. */
static int hex_nibbles16(__m128i c, __m128i *v)
{
    __m128i lc = _mm_or_si128(c, _mm_set1_epi8(0x20));
    __m128i dig = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
    __m128i alp = _mm_and_si128(_mm_cmpgt_epi8(lc, _mm_set1_epi8('a' - 1)),
                                _mm_cmplt_epi8(lc, _mm_set1_epi8('f' + 1)));
    if (_mm_movemask_epi8(_mm_or_si128(dig, alp)) != 0xFFFF)
        return 0;
    *v = _mm_or_si128(_mm_and_si128(dig, _mm_sub_epi8(c, _mm_set1_epi8('0'))),
                      _mm_and_si128(alp, _mm_sub_epi8(lc, _mm_set1_epi8('a' - 10))));
    return 1;
}

static size_t hex_decode_fast(const uint8_t *in, size_t n, uint8_t *out)
{
    const __m128i low = _mm_set1_epi16(0x00FF);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v0, v1;
        if (!hex_nibbles16(_mm_loadu_si128((const __m128i *)(const void *)(in + 2 * i)), &v0) ||
            !hex_nibbles16(_mm_loadu_si128((const __m128i *)(const void *)(in + 2 * i + 16)), &v1))
            break;
        /* each 16-bit lane holds (first char, second char): byte = first << 4 | second */
        __m128i w0 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v0, low), 4), _mm_srli_epi16(v0, 8));
        __m128i w1 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v1, low), 4), _mm_srli_epi16(v1, 8));
        _mm_storeu_si128((__m128i *)(void *)(out + i), _mm_packus_epi16(w0, w1));
    }
    return i;
}
#else
static size_t hex_encode_fast(const uint8_t *in, size_t n, uint8_t *out)
{
    (void)in, (void)n, (void)out;
    return 0;
}
static size_t hex_decode_fast(const uint8_t *in, size_t n, uint8_t *out)
{
    (void)in, (void)n, (void)out;
    return 0;
}
#endif

void iso_hex_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    for (size_t i = hex_encode_fast(in, n, out); i < n; i++)
        memcpy(out + 2 * i, iso_hexpair[in[i]], 2);
}

/* ---- unpack ------------------------------------------------------------------------------- */

static int read_bitmap(const struct iso_dialect *d, const uint8_t *frame, size_t len, size_t *pos,
                       uint64_t *out, const char *which, struct iso_err *err)
{
    size_t at = *pos, n = d->bitmap_enc == ISO_ENC_HEX ? 16 : 8;
    if (n > len - at)
        return iso_fail(err, ISO_E_TRUNCATED, 1, at, "message ends inside the %s bitmap", which);
    uint64_t v = 0;
    if (n == 16) {
        for (size_t i = 0; i < 16; i++) {
            uint8_t h = iso_nibble[frame[at + i]];
            if (h == 0xFF)
                return iso_fail(err, ISO_E_BITMAP, 1, at + i, "non-hex character in the %s bitmap",
                                which);
            v = v << 4 | (uint64_t)h;
        }
    } else {
        for (size_t i = 0; i < 8; i++)
            v = v << 8 | frame[at + i];
    }
    *out = v;
    *pos = at + n;
    return 0;
}

static int unpack_field(const struct iso_field_spec *s, int f, const uint8_t *frame, size_t len,
                        size_t *pos, struct iso_msg *m, struct iso_err *err)
{
    size_t flen = 0, at = *pos, bad = 0;
    if (s->len_kind == ISO_LEN_FIXED) {
        flen = s->max_len;
    } else {
        int rc = read_prefix(s, f, frame, len, pos, &flen, err);
        if (rc)
            return rc;
        at = *pos;
    }
    size_t wsz = wire_size(s, flen);
    if (wsz > len - at)
        return iso_fail(err, ISO_E_TRUNCATED, f, at,
                        "field %d: %zu bytes announced, %zu left in the message", f, wsz, len - at);
    const uint8_t *src = frame + at;
    const uint8_t *val = src;
    uint8_t *dst;
    switch (s->data_enc) {
    case ISO_ENC_ASCII:
    case ISO_ENC_BINARY:
        break;
    case ISO_ENC_HEX:
        if (!(dst = arena_take(m, flen)))
            return iso_fail(err, ISO_E_ARENA, f, at, "field %d: arena too small", f);
        for (size_t i = hex_decode_fast(src, flen, dst); i < flen; i++) {
            uint8_t hi = iso_nibble[src[2 * i]], lo = iso_nibble[src[2 * i + 1]];
            if ((hi | lo) & 0xF0)
                return iso_fail(err, ISO_E_CHARSET, f, at + 2 * i + (hi != 0xFF),
                                "field %d: non-hex character in a b field", f);
            dst[i] = (uint8_t)(hi << 4 | lo);
        }
        val = dst;
        break;
    case ISO_ENC_EBCDIC:
        if (!(dst = arena_take(m, flen)))
            return iso_fail(err, ISO_E_ARENA, f, at, "field %d: arena too small", f);
        for (size_t i = 0; i < flen; i++)
            dst[i] = iso_e2a[src[i]]; /* unmapped bytes become 0 and fail the class check */
        val = dst;
        break;
    case ISO_ENC_BCD: {
        if (!(dst = arena_take(m, flen)))
            return iso_fail(err, ISO_E_ARENA, f, at, "field %d: arena too small", f);
        const uint8_t *digits = src;
        size_t ndig = flen;
        uint8_t *o = dst;
        if (s->type == ISO_T_XN) {
            if (flen < 2)
                return iso_fail(err, ISO_E_LENGTH, f, at, "field %d: x+n needs sign and digits", f);
            *o++ = src[0];
            digits++;
            ndig--;
        }
        if (bcd_decode(digits, ndig, s->pad, s->type == ISO_T_Z, o, &bad))
            return iso_fail(err, ISO_E_BCD, f, (size_t)(digits - frame) + bad,
                            "field %d: invalid BCD digit or pad nibble", f);
        val = dst;
        /* bcd_decode() only emits digits (and '=' for z): nothing left to check for n and z */
        if (s->type == ISO_T_N || s->type == ISO_T_Z) {
            m->f[f].ptr = val;
            m->f[f].len = (uint32_t)flen;
            *pos = at + wsz;
            return 0;
        }
        break;
    }
    default:
        return iso_fail(err, ISO_E_UNDEFINED, f, at, "field %d: unsupported encoding", f);
    }
    size_t badpos = check_chars(s->type, val, flen);
    if (badpos) {
        size_t off = at;
        if (s->data_enc == ISO_ENC_ASCII || s->data_enc == ISO_ENC_EBCDIC)
            off = at + badpos - 1;
        return iso_fail(err, ISO_E_CHARSET, f, off,
                        "field %d: character not allowed for type %s at position %zu", f,
                        type_names[s->type], badpos - 1);
    }
    m->f[f].ptr = val;
    m->f[f].len = (uint32_t)flen;
    *pos = at + wsz;
    return 0;
}

int iso_unpack(const struct iso_dialect *d, const uint8_t *frame, size_t len, struct iso_msg *m,
               struct iso_err *err)
{
    if (!d || !m || (!frame && len))
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL dialect, message or frame");
    iso_msg_clear(m);
    if (len == 0)
        return iso_fail(err, ISO_E_EMPTY, 0, 0, "empty message");
    size_t pos = 0, bad;
    /* MTI */
    if (d->mti_enc == ISO_ENC_BCD) {
        size_t v;
        if (len < 2)
            return iso_fail(err, ISO_E_TRUNCATED, 0, 0, "message ends inside the MTI");
        if (parse_bcd(frame, 2, &v, &bad))
            return iso_fail(err, ISO_E_MTI, 0, bad, "MTI is not BCD");
        for (int i = 0; i < 4; i++)
            m->mti[i] = (char)('0' + ((frame[i >> 1] >> ((i & 1) ? 0 : 4)) & 0xF));
        pos = 2;
    } else {
        size_t v;
        if (len < 4)
            return iso_fail(err, ISO_E_TRUNCATED, 0, 0, "message ends inside the MTI");
        if (parse_digits(frame, 4, d->mti_enc == ISO_ENC_EBCDIC ? 0xF0 : '0', &v, &bad))
            return iso_fail(err, ISO_E_MTI, 0, bad, "non-digit in the MTI");
        for (int i = 0; i < 4; i++)
            m->mti[i] = (char)('0' + (frame[i] & 0xF));
        pos = 4;
    }
    int rc = read_bitmap(d, frame, len, &pos, &m->bits[0], "primary", err);
    if (rc)
        return rc;
    if (m->bits[0] & TOP_BIT) {
        m->bits[0] &= ~TOP_BIT;
        m->flags |= ISO_MSG_SECONDARY;
        if ((rc = read_bitmap(d, frame, len, &pos, &m->bits[1], "secondary", err)))
            return rc;
    }
    for (int w = 0; w < 3; w++) {
        uint64_t word = m->bits[w];
        while (word) {
            int lz = __builtin_clzll(word);
            int f = w * 64 + lz + 1;
            word &= ~(TOP_BIT >> lz);
            if (f == 65 && d->tertiary) {
                m->bits[1] &= ~TOP_BIT;
                m->flags |= ISO_MSG_TERTIARY;
                if ((rc = read_bitmap(d, frame, len, &pos, &m->bits[2], "tertiary", err)))
                    return rc;
                continue;
            }
            const struct iso_field_spec *s = &d->field[f];
            if (s->type == ISO_T_NONE)
                return iso_fail(err, ISO_E_UNDEFINED, f, pos,
                                "bit %d set but the dialect defines no field %d", f, f);
            if ((rc = unpack_field(s, f, frame, len, &pos, m, err)))
                return rc;
        }
    }
    if (pos != len)
        return iso_fail(err, ISO_E_TRAILING, -1, pos, "%zu bytes after the last field", len - pos);
    return 0;
}

/* ---- pack --------------------------------------------------------------------------------- */

static int write_bitmap(const struct iso_dialect *d, uint64_t v, uint8_t *out, size_t cap,
                        size_t *pos, struct iso_err *err)
{
    size_t n = d->bitmap_enc == ISO_ENC_HEX ? 16 : 8;
    if (n > cap - *pos)
        return iso_fail(err, ISO_E_NOSPACE, 1, *pos, "output buffer too small for a bitmap");
    uint8_t *o = out + *pos;
    if (n == 16)
        for (int i = 0; i < 8; i++)
            memcpy(o + 2 * i, iso_hexpair[(uint8_t)(v >> (56 - 8 * i))], 2);
    else
        for (int i = 0; i < 8; i++)
            o[i] = (uint8_t)(v >> (56 - 8 * i));
    *pos += n;
    return 0;
}

static void write_prefix(const struct iso_field_spec *s, size_t flen, uint8_t *o)
{
    size_t nd = prefix_digits[s->len_kind];
    switch (s->len_enc) {
    case ISO_ENC_ASCII:
    case ISO_ENC_EBCDIC: {
        uint8_t base = s->len_enc == ISO_ENC_ASCII ? '0' : 0xF0;
        for (size_t i = nd; i-- > 0; flen /= 10)
            o[i] = (uint8_t)(base + flen % 10);
        break;
    }
    case ISO_ENC_BCD:
        if (nd == 2) {
            o[0] = (uint8_t)((flen / 10) << 4 | flen % 10);
        } else {
            o[0] = (uint8_t)((flen / 1000) << 4 | (flen / 100) % 10);
            o[1] = (uint8_t)(((flen / 10) % 10) << 4 | flen % 10);
        }
        break;
    default:
        if (nd == 2) {
            o[0] = (uint8_t)flen;
        } else {
            o[0] = (uint8_t)(flen >> 8);
            o[1] = (uint8_t)flen;
        }
        break;
    }
}

static int pack_field(const struct iso_field_spec *s, int f, const struct iso_view *v, uint8_t *out,
                      size_t cap, size_t *pos, struct iso_err *err)
{
    size_t flen = v->len, at = *pos;
    if (s->len_kind == ISO_LEN_FIXED) {
        if (flen != s->max_len)
            return iso_fail(err, ISO_E_FIXED_LENGTH, f, at,
                            "field %d: length %zu, fixed length is %u", f, flen,
                            (unsigned)s->max_len);
    } else if (flen > s->max_len) {
        return iso_fail(err, ISO_E_TOO_LONG, f, at, "field %d: length %zu above maximum %u", f,
                        flen, (unsigned)s->max_len);
    }
    size_t badpos = check_chars(s->type, v->ptr, flen);
    if (badpos)
        return iso_fail(err, ISO_E_CHARSET, f, at,
                        "field %d: character not allowed for type %s at position %zu", f,
                        type_names[s->type], badpos - 1);
    size_t psz = prefix_size(s), wsz = wire_size(s, flen);
    if (psz + wsz > cap - at)
        return iso_fail(err, ISO_E_NOSPACE, f, at, "output buffer too small for field %d", f);
    uint8_t *o = out + at;
    if (psz)
        write_prefix(s, flen, o);
    o += psz;
    const uint8_t *p = v->ptr;
    switch (s->data_enc) {
    case ISO_ENC_HEX:
        iso_hex_encode(p, flen, o);
        break;
    case ISO_ENC_EBCDIC:
        for (size_t i = 0; i < flen; i++)
            o[i] = iso_a2e[p[i] & 0x7F]; /* check_chars() allowed printable ASCII only */
        break;
    case ISO_ENC_BCD:
        if (s->type == ISO_T_XN) {
            *o++ = p[0];
            p++;
            flen--;
        }
        bcd_encode(p, flen, s->pad, o);
        break;
    default:
        if (flen)
            memcpy(o, p, flen);
        break;
    }
    *pos = at + psz + wsz;
    return 0;
}

int iso_pack(const struct iso_dialect *d, const struct iso_msg *m, uint8_t *out, size_t cap,
             size_t *outlen, struct iso_err *err)
{
    if (!d || !m || !out || !outlen)
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL dialect, message or buffer");
    size_t pos = 0;
    for (int i = 0; i < 4; i++)
        if (m->mti[i] < '0' || m->mti[i] > '9')
            return iso_fail(err, ISO_E_MTI, 0, 0, "MTI must be four digits");
    if (d->mti_enc == ISO_ENC_BCD) {
        if (cap < 2)
            return iso_fail(err, ISO_E_NOSPACE, 0, 0, "output buffer too small for the MTI");
        out[0] = (uint8_t)((m->mti[0] - '0') << 4 | (m->mti[1] - '0'));
        out[1] = (uint8_t)((m->mti[2] - '0') << 4 | (m->mti[3] - '0'));
        pos = 2;
    } else {
        if (cap < 4)
            return iso_fail(err, ISO_E_NOSPACE, 0, 0, "output buffer too small for the MTI");
        for (int i = 0; i < 4; i++)
            out[i] = d->mti_enc == ISO_ENC_EBCDIC ? (uint8_t)(0xF0 | (m->mti[i] - '0'))
                                                  : (uint8_t)m->mti[i];
        pos = 4;
    }
    uint64_t w[3] = { m->bits[0] & ~TOP_BIT, m->bits[1], m->bits[2] };
    if (d->tertiary) {
        if (w[1] & TOP_BIT)
            return iso_fail(err, ISO_E_UNDEFINED, 65, pos,
                            "field 65 is the tertiary bitmap in this dialect");
        if (w[2] || (m->flags & ISO_MSG_TERTIARY))
            w[1] |= TOP_BIT;
    } else if (w[2]) {
        int f = 128 + __builtin_clzll(w[2]) + 1;
        return iso_fail(err, ISO_E_UNDEFINED, f, pos,
                        "field %d needs a tertiary bitmap, which this dialect lacks", f);
    }
    uint64_t primary = w[0] | ((w[1] || (m->flags & ISO_MSG_SECONDARY)) ? TOP_BIT : 0);
    int rc = write_bitmap(d, primary, out, cap, &pos, err);
    if (rc)
        return rc;
    if ((primary & TOP_BIT) && (rc = write_bitmap(d, w[1], out, cap, &pos, err)))
        return rc;
    for (int wi = 0; wi < 3; wi++) {
        uint64_t word = w[wi];
        while (word) {
            int lz = __builtin_clzll(word);
            int f = wi * 64 + lz + 1;
            word &= ~(TOP_BIT >> lz);
            if (f == 65 && d->tertiary) {
                if ((rc = write_bitmap(d, w[2], out, cap, &pos, err)))
                    return rc;
                continue;
            }
            const struct iso_field_spec *s = &d->field[f];
            if (s->type == ISO_T_NONE)
                return iso_fail(err, ISO_E_UNDEFINED, f, pos, "the dialect defines no field %d", f);
            if ((rc = pack_field(s, f, &m->f[f], out, cap, &pos, err)))
                return rc;
        }
    }
    *outlen = pos;
    return 0;
}
