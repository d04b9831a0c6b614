/* Unit tests of libatlas_iso8583: hand-written golden frames in every dialect (both ways),
 * every length kind and encoding, tertiary bitmap, the malformed-input table, BER-TLV edge
 * cases, framing, masking, dialect spec files and the message helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iso8583.h"
#include "iso8583_golden.h"
#include "test_hex.h"

static uint8_t arena[65536];
static uint8_t arena2[65536];

static const struct iso_dialect *golden_dialect(const struct golden *g, struct iso_dialect *tmp)
{
    if (g->dialect)
        return iso_dialect_find(g->dialect);
    struct iso_err err = { 0 };
    if (iso_dialect_parse(g->spec, strlen(g->spec), tmp, &err) != 0)
        fail_msg("spec of '%s': %s", g->name, err.reason);
    return tmp;
}

/* Builds the golden's message in m (values copied into the arena). */
static void build_golden(const struct iso_dialect *d, const struct golden *g, struct iso_msg *m)
{
    iso_msg_init(m, arena2, sizeof(arena2));
    assert_int_equal(iso_set_mti(m, g->mti), 0);
    m->flags = g->flags;
    for (const struct golden_field *f = g->fields; f->v; f++) {
        if (d->field[f->f].type == ISO_T_B) {
            uint8_t buf[512];
            size_t n = unhex(f->v, buf);
            assert_int_equal(iso_set_copy(m, f->f, buf, n), 0);
        } else {
            assert_int_equal(iso_set_str(m, f->f, f->v), 0);
        }
    }
}

static void assert_field(const struct iso_dialect *d, const struct iso_msg *m,
                         const struct golden_field *f, const char *name)
{
    size_t len;
    const uint8_t *p = iso_get(m, f->f, &len);
    if (!p)
        fail_msg("%s: field %d missing", name, f->f);
    uint8_t want[512];
    size_t wn;
    if (d->field[f->f].type == ISO_T_B)
        wn = unhex(f->v, want);
    else {
        wn = strlen(f->v);
        memcpy(want, f->v, wn);
    }
    if (len != wn || memcmp(p, want, wn) != 0)
        fail_msg("%s: field %d differs", name, f->f);
}

static void test_golden_both_ways(void **state)
{
    for (size_t i = 0; i < N_GOLDENS; i++) {
        const struct golden *g = &goldens[i];
        struct iso_dialect tmp;
        const struct iso_dialect *d = golden_dialect(g, &tmp);
        assert_non_null(d);
        uint8_t wire[4096], out[4096];
        long wn = golden_bytes(g->wire, wire, sizeof(wire));
        if (wn <= 0)
            fail_msg("%s: bad golden notation", g->name);
        /* unpack: every field and nothing else */
        struct iso_msg m;
        struct iso_err err = { 0 };
        iso_msg_init(&m, arena, sizeof(arena));
        if (iso_unpack(d, wire, (size_t)wn, &m, &err) != 0)
            fail_msg("%s: unpack: %s field %d offset %zu: %s", g->name, iso_strerror(err.code),
                     err.field, err.offset, err.reason);
        assert_memory_equal(m.mti, g->mti, 4);
        assert_int_equal(m.flags, g->flags);
        int count = 0;
        for (const struct golden_field *f = g->fields; f->v; f++, count++)
            assert_field(d, &m, f, g->name);
        int seen = 0;
        for (int f = iso_next(&m, 0); f; f = iso_next(&m, f))
            seen++;
        assert_int_equal(seen, count);
        /* pack from the values: byte-identical */
        struct iso_msg b;
        build_golden(d, g, &b);
        size_t on = 0;
        if (iso_pack(d, &b, out, sizeof(out), &on, &err) != 0)
            fail_msg("%s: pack: %s field %d: %s", g->name, iso_strerror(err.code), err.field,
                     err.reason);
        if (on != (size_t)wn || memcmp(out, wire, on) != 0)
            fail_msg("%s: packed bytes differ from the golden frame", g->name);
        /* re-pack of the unpacked message: byte-identical too */
        assert_int_equal(iso_pack(d, &m, out, sizeof(out), &on, &err), 0);
        assert_int_equal(on, (size_t)wn);
        assert_memory_equal(out, wire, on);
    }
}

/* Truncating any golden frame anywhere must fail cleanly with TRUNCATED (EMPTY at 0). */
static void test_truncated_everywhere(void **state)
{
    for (size_t i = 0; i < N_GOLDENS; i++) {
        const struct golden *g = &goldens[i];
        struct iso_dialect tmp;
        const struct iso_dialect *d = golden_dialect(g, &tmp);
        uint8_t wire[4096];
        long wn = golden_bytes(g->wire, wire, sizeof(wire));
        for (long cut = 0; cut < wn; cut++) {
            /* copy into an exact-size heap block so ASan catches any over-read */
            uint8_t *p = malloc(cut ? (size_t)cut : 1);
            memcpy(p, wire, (size_t)cut);
            struct iso_msg m;
            struct iso_err err = { 0 };
            iso_msg_init(&m, arena, sizeof(arena));
            int rc = iso_unpack(d, p, (size_t)cut, &m, &err);
            free(p);
            int want = cut == 0 ? ISO_E_EMPTY : ISO_E_TRUNCATED;
            if (rc != want || err.code != want || err.offset > (size_t)cut)
                fail_msg("%s cut at %ld: rc %d (%s) offset %zu", g->name, cut, rc, err.reason,
                         err.offset);
        }
    }
}

struct bad_case {
    const char *name;
    const char *dialect;
    const char *wire;
    int code, field;
    size_t offset;
};

static const struct bad_case bad_cases[] = {
    { "empty frame", "ascii87", "", ISO_E_EMPTY, 0, 0 },
    { "MTI with a letter", "ascii87", "'02A0' '2000000000000000' '000000'", ISO_E_MTI, 0, 2 },
    { "bcd MTI nibble A", "bcd87", "02A0 2000000000000000 000000", ISO_E_MTI, 0, 1 },
    { "bitmap with a non-hex character", "ascii87", "'0200' '20000000000G0000' '000000'",
      ISO_E_BITMAP, 1, 15 },
    { "n field with a letter", "ascii87", "'0200' '2000000000000000' '00A000'", ISO_E_CHARSET, 3,
      22 },
    { "LL prefix with a letter", "ascii87", "'0200' '4000000000000000' '1X' '4761739001'",
      ISO_E_LENGTH, 2, 21 },
    { "LL prefix above the maximum", "ascii87",
      "'0200' '4000000000000000' '20' '47617390010100101234'", ISO_E_TOO_LONG, 2, 20 },
    { "LLL prefix larger than the frame", "ascii87", "'0200' '0000000000010000' '999' 'ABC'",
      ISO_E_TRUNCATED, 48, 23 },
    { "bit set but data missing", "ascii87", "'0200' '3000000000000000' '000000'", ISO_E_TRUNCATED,
      4, 26 },
    { "trailing bytes", "ascii87", "'0200' '2000000000000000' '000000' 'X'", ISO_E_TRAILING, -1,
      26 },
    { "secondary bitmap announced but missing", "ascii87", "'0200' 'A000000000000000'",
      ISO_E_TRUNCATED, 1, 20 },
    { "b field as hex with a non-hex character", "ascii87",
      "'0200' '0000000000001000' '11223344556677G8'", ISO_E_CHARSET, 52, 34 },
    { "x+n without a sign", "ascii87", "'0200' '0000001000000000' '000000150'", ISO_E_CHARSET, 28,
      20 },
    { "z field with a letter", "ascii87", "'0200' '0000000020000000' '05' '47X=1'", ISO_E_CHARSET,
      35, 24 },
    { "ans field with a control byte", "ascii87", "'0200' '0000000000800000' 'TERM' 01 '001'",
      ISO_E_CHARSET, 41, 24 },
    { "bcd n nibble above 9", "bcd87", "0200 2000000000000000 00A000", ISO_E_BCD, 3, 11 },
    { "bcd n with a D nibble (only z may)", "bcd87", "0200 2000000000000000 00D000", ISO_E_BCD, 3,
      11 },
    { "bcd z with an A nibble", "bcd87", "0200 0000000020000000 03 12A0", ISO_E_BCD, 35, 12 },
    { "bcd odd fixed field with a non-zero pad nibble", "bcd87", "0200 0000040000000000 1051",
      ISO_E_BCD, 22, 10 },
    { "bcd LL prefix not BCD", "bcd87", "0200 4000000000000000 1A 47617390", ISO_E_LENGTH, 2, 10 },
    { "bcd LLVAR right pad nibble not 0", "bcd87", "0200 4000000000000000 03 123F", ISO_E_BCD, 2,
      12 },
    { "ebcdic byte outside cp037 printable", "ebcdic87",
      "F0F2F0F0 0000000000800000 E3C5D9D4F0F0F0 07", ISO_E_CHARSET, 41, 19 },
    { "ebcdic LL prefix not EBCDIC digits", "ebcdic87", "F0F2F0F0 4000000000000000 F1 31",
      ISO_E_LENGTH, 2, 13 },
};

static void test_malformed_table(void **state)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        const struct iso_dialect *d = iso_dialect_find(c->dialect);
        uint8_t wire[256];
        long wn = golden_bytes(c->wire, wire, sizeof(wire));
        assert_true(wn >= 0);
        uint8_t *p = malloc(wn ? (size_t)wn : 1);
        memcpy(p, wire, (size_t)wn);
        struct iso_msg m;
        struct iso_err err = { 0 };
        iso_msg_init(&m, arena, sizeof(arena));
        int rc = iso_unpack(d, p, (size_t)wn, &m, &err);
        free(p);
        if (rc != c->code || err.code != c->code || err.field != c->field ||
            err.offset != c->offset)
            fail_msg("%s: got %d (%s) field %d offset %zu, want %d field %d offset %zu", c->name,
                     rc, err.reason, err.field, err.offset, c->code, c->field, c->offset);
        assert_true(strlen(err.reason) > 0);
    }
}

/* A reason never carries field content: decode a bad PAN-bearing frame and look for digits. */
static void test_reason_has_no_value(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    uint8_t wire[128];
    long wn = golden_bytes("'0200' '6000000000000000' '16' '4761739001010010' '00000X'", wire,
                           sizeof(wire));
    struct iso_msg m;
    struct iso_err err = { 0 };
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_unpack(d, wire, (size_t)wn, &m, &err), ISO_E_CHARSET);
    assert_null(strstr(err.reason, "476173"));
    assert_null(strstr(err.reason, "0010"));
    assert_null(strstr(err.reason, "00000X"));
}

/* Hex b fields (ascii87 DE 55): every byte value at every position of a 40-byte value is
 * accepted exactly when it is a hex digit (either case), and an error names the exact offset.
 * Covers the vectorised block path and the scalar tail alike. */
static void test_hex_field_every_byte(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    /* MTI, bitmap with DE 55 only (byte 7 = 0x02), LLL 040, 80 hex characters */
    static uint8_t frame[4 + 16 + 3 + 80];
    memcpy(frame,
           "0200"
           "0000000000000200"
           "040",
           23);
    const char *hexd = "0123456789abcdefABCDEF";
    struct iso_msg m;
    struct iso_err err;
    for (size_t pos = 0; pos < 80; pos += 3) {
        for (int c = 0; c < 256; c++) {
            for (size_t i = 0; i < 80; i++)
                frame[23 + i] = (uint8_t)hexd[(i * 7) % 22];
            frame[23 + pos] = (uint8_t)c;
            iso_msg_init(&m, arena, sizeof(arena));
            int rc = iso_unpack(d, frame, sizeof(frame), &m, &err);
            int valid = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (valid) {
                if (rc != 0)
                    fail_msg("byte 0x%02X at %zu refused", c, pos);
                size_t len;
                const uint8_t *v = iso_get(&m, 55, &len);
                assert_int_equal(len, 40);
                for (size_t i = 0; i < 40; i++) {
                    unsigned want;
                    char two[3] = { (char)frame[23 + 2 * i], (char)frame[24 + 2 * i], 0 };
                    sscanf(two, "%2x", &want);
                    if (v[i] != want)
                        fail_msg("byte %zu decoded wrong (char 0x%02X at %zu)", i, c, pos);
                }
            } else if (rc != ISO_E_CHARSET || err.field != 55 || err.offset != 23 + pos) {
                fail_msg("byte 0x%02X at %zu: rc %d offset %zu", c, pos, rc, err.offset);
            }
        }
    }
    /* and the encoder: 40 bytes of every value pattern re-pack to upper-case hex */
    uint8_t val[40], out[256];
    for (int base = 0; base < 256; base += 40) {
        for (int i = 0; i < 40; i++)
            val[i] = (uint8_t)(base + i);
        iso_msg_init(&m, arena, sizeof(arena));
        assert_int_equal(iso_set_mti(&m, "0200"), 0);
        assert_int_equal(iso_set(&m, 55, val, 40), 0);
        size_t n;
        assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), 0);
        assert_int_equal(n, 23 + 80);
        for (int i = 0; i < 40; i++) {
            char want[3];
            snprintf(want, sizeof(want), "%02X", val[i]);
            assert_memory_equal(out + 23 + 2 * i, want, 2);
        }
    }
}

/* Character classes: every byte value at many positions of a long n field (DE 90, 42 digits)
 * and a long ans field (DE 43, 40 characters) is accepted exactly when its class allows it, on
 * unpack and on pack, and the error names the exact byte. Covers the 8-bytes-at-a-time scan. */
static void test_charset_every_byte(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    static const struct {
        int field;
        const char *bitmap;
        size_t len;
        char fill;
    } cases[] = { { 90, "'8000000000000000' '0000004000000000'", 42, '7' },
                  { 43, "'0000000000200000'", 40, 'k' } };
    for (size_t k = 0; k < 2; k++) {
        uint8_t frame[128];
        char notation[96];
        snprintf(notation, sizeof(notation), "'0200' %s", cases[k].bitmap);
        long hl = golden_bytes(notation, frame, sizeof(frame));
        assert_true(hl > 0);
        for (size_t pos = 0; pos < cases[k].len; pos++) {
            for (int c = 0; c < 256; c++) {
                memset(frame + hl, cases[k].fill, cases[k].len);
                frame[hl + pos] = (uint8_t)c;
                int valid =
                    cases[k].field == 90 ? (c >= '0' && c <= '9') : (c >= 0x20 && c <= 0x7E);
                struct iso_msg m;
                struct iso_err err;
                iso_msg_init(&m, arena, sizeof(arena));
                int rc = iso_unpack(d, frame, (size_t)hl + cases[k].len, &m, &err);
                if (valid ? rc != 0
                          : (rc != ISO_E_CHARSET || err.field != cases[k].field ||
                             err.offset != (size_t)hl + pos))
                    fail_msg("DE %d byte 0x%02X at %zu: rc %d offset %zu", cases[k].field, c, pos,
                             rc, err.offset);
                /* pack applies the same rule to the canonical value */
                iso_msg_init(&m, arena, sizeof(arena));
                assert_int_equal(iso_set_mti(&m, "0200"), 0);
                assert_int_equal(iso_set(&m, cases[k].field, frame + hl, cases[k].len), 0);
                uint8_t out[128];
                size_t n;
                rc = iso_pack(d, &m, out, sizeof(out), &n, &err);
                if (valid ? rc != 0 : rc != ISO_E_CHARSET)
                    fail_msg("pack DE %d byte 0x%02X at %zu: rc %d", cases[k].field, c, pos, rc);
            }
        }
    }
}

static void test_pack_validation(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    struct iso_msg m;
    struct iso_err err = { 0 };
    uint8_t out[512];
    size_t n;
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_set_mti(&m, "0200"), 0);
    assert_int_equal(iso_set_mti(&m, "020"), ISO_E_MTI);
    assert_int_equal(iso_set_mti(&m, "02000"), ISO_E_MTI);
    assert_int_equal(iso_set(&m, 1, "x", 1), ISO_E_ARG);
    assert_int_equal(iso_set(&m, 193, "x", 1), ISO_E_ARG);

    assert_int_equal(iso_set_str(&m, 3, "00000"), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), ISO_E_FIXED_LENGTH);
    assert_int_equal(err.field, 3);
    assert_int_equal(err.offset, 20);
    assert_int_equal(iso_set_str(&m, 3, "00000A"), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), ISO_E_CHARSET);
    assert_int_equal(iso_set_str(&m, 3, "000000"), 0);
    assert_int_equal(iso_set_str(&m, 2, "47617390010100101234"), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), ISO_E_TOO_LONG);
    assert_int_equal(err.field, 2);
    iso_unset(&m, 2);
    assert_false(iso_has(&m, 2));
    assert_int_equal(iso_pack(d, &m, out, 25, &n, &err), ISO_E_NOSPACE);
    assert_int_equal(iso_pack(d, &m, out, 26, &n, &err), 0);
    assert_int_equal(n, 26);
    /* x+n: sign then digits */
    assert_int_equal(iso_set_str(&m, 28, "X00000150"), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), ISO_E_CHARSET);
    assert_int_equal(err.field, 28);
    iso_unset(&m, 28);
    /* fields above 128 need a tertiary dialect */
    assert_int_equal(iso_set_str(&m, 150, "X"), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof(out), &n, &err), ISO_E_UNDEFINED);
    assert_int_equal(err.field, 150);
}

static void test_arena_limits(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("bcd87");
    uint8_t wire[512];
    long wn = golden_bytes(goldens[2].wire, wire, sizeof(wire));
    struct iso_msg m;
    struct iso_err err = { 0 };
    uint8_t small[8];
    iso_msg_init(&m, small, sizeof(small));
    assert_int_equal(iso_unpack(d, wire, (size_t)wn, &m, &err), ISO_E_ARENA);
    uint8_t *big = malloc(ISO_ARENA_FOR(wn));
    iso_msg_init(&m, big, ISO_ARENA_FOR(wn));
    assert_int_equal(iso_unpack(d, wire, (size_t)wn, &m, &err), 0);
    free(big);
    iso_msg_init(&m, small, sizeof(small));
    assert_int_equal(iso_set_copy(&m, 41, "TERM0001", 8), 0);
    assert_int_equal(iso_set_copy(&m, 42, "X", 1), ISO_E_ARENA);
}

/* Views point into the frame where the wire form is canonical, into the arena otherwise. */
static void test_views(void **state)
{
    uint8_t wire[512];
    struct iso_msg m;
    struct iso_err err;
    const struct iso_dialect *a = iso_dialect_find("ascii87");
    long wn = golden_bytes(goldens[0].wire, wire, sizeof(wire));
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_unpack(a, wire, (size_t)wn, &m, &err), 0);
    size_t len;
    const uint8_t *p = iso_get(&m, 2, &len);
    assert_true(p >= wire && p < wire + wn);
    p = iso_get(&m, 52, &len); /* hex text decoded */
    assert_true(p >= arena && p < arena + sizeof(arena));
    assert_int_equal(len, 8);
    assert_null(iso_get(&m, 5, &len));
}

static void test_msg_copy_for_response(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    uint8_t wire[512], out[512];
    long wn = golden_bytes(goldens[0].wire, wire, sizeof(wire));
    struct iso_msg req, rsp;
    struct iso_err err;
    size_t n;
    iso_msg_init(&req, arena, sizeof(arena));
    assert_int_equal(iso_unpack(d, wire, (size_t)wn, &req, &err), 0);
    iso_msg_init(&rsp, arena2, sizeof(arena2));
    iso_msg_copy(&rsp, &req);
    assert_int_equal(iso_set_mti(&rsp, "0210"), 0);
    iso_unset(&rsp, 52);
    iso_unset(&rsp, 35);
    iso_unset(&rsp, 55);
    assert_int_equal(iso_set_str(&rsp, 39, "00"), 0);
    assert_int_equal(iso_set_str(&rsp, 38, "A1B2C3"), 0);
    assert_int_equal(iso_pack(d, &rsp, out, sizeof(out), &n, &err), 0);
    /* the request is untouched */
    assert_true(iso_has(&req, 52));
    assert_false(iso_has(&req, 39));
    struct iso_msg back;
    static uint8_t a3[4096];
    iso_msg_init(&back, a3, sizeof(a3));
    assert_int_equal(iso_unpack(d, out, n, &back, &err), 0);
    assert_memory_equal(back.mti, "0210", 4);
    size_t l;
    assert_memory_equal(iso_get(&back, 39, &l), "00", 2);
    assert_memory_equal(iso_get(&back, 2, &l), "4761739001010010", 16);
    assert_false(iso_has(&back, 52));
    /* deep copy: independent of the request frame */
    struct iso_msg deep;
    static uint8_t a4[4096];
    iso_msg_init(&deep, a4, sizeof(a4));
    assert_int_equal(iso_msg_copy_deep(&deep, &req, &err), 0);
    memset(wire, 'Z', sizeof(wire));
    assert_memory_equal(iso_get(&deep, 2, &l), "4761739001010010", 16);
    assert_int_equal(iso_next(&deep, 0), 2);
    assert_int_equal(iso_next(&deep, 55), 0);
    assert_int_equal(iso_next(&deep, 49), 52);
}

static void test_tertiary(void **state)
{
    struct iso_dialect d;
    struct iso_err err;
    const char *spec = G_TERTIARY_SPEC;
    assert_int_equal(iso_dialect_parse(spec, strlen(spec), &d, &err), 0);
    assert_int_equal(d.tertiary, 1);
    struct iso_msg m;
    uint8_t out[512];
    size_t n;
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_set_mti(&m, "0200"), 0);
    assert_int_equal(iso_set_str(&m, 192, "12345678"), 0);
    assert_int_equal(iso_pack(&d, &m, out, sizeof(out), &n, &err), 0);
    /* MTI + 3 bitmaps + 16 hex chars for b 8 */
    assert_int_equal(n, 4 + 16 * 3 + 16);
    assert_memory_equal(out + 4, "80000000000000008000000000000000", 32);
    assert_memory_equal(out + 36, "0000000000000001", 16);
    /* field 65 is the tertiary bitmap here, not data */
    assert_int_equal(iso_set_str(&m, 65, "00"), 0);
    assert_int_equal(iso_pack(&d, &m, out, sizeof(out), &n, &err), ISO_E_UNDEFINED);
    assert_int_equal(err.field, 65);
    /* without the option, bit 65 is DE 65 (b 1) */
    const struct iso_dialect *a = iso_dialect_find("ascii87");
    uint8_t wire[128];
    long wn = golden_bytes("'0200' '8000000000000000' '8000000000000000' 'AB'", wire, sizeof(wire));
    assert_int_equal(iso_unpack(a, wire, (size_t)wn, &m, &err), 0);
    size_t l;
    assert_int_equal(iso_get(&m, 65, &l)[0], 0xAB);
}

static void test_tlv(void **state)
{
    struct iso_tlv it[16];
    size_t n, on;
    struct iso_err err;
    uint8_t buf[600], out[600];
    /* 1-, 2-, 3-byte tags; short, long (81), non-minimal long (82 00 05) forms; proprietary
     * DF8116; constructed 70 kept opaque. */
    long bn = golden_bytes("9F2608 0102030405060708"
                           "DF8116 02 ABCD"
                           "95 05 8000048000"
                           "9F10 82 0005 0102030405"
                           "70 06 5A 04 47617390"
                           "9F7C 81 80",
                           buf, sizeof(buf));
    memset(buf + bn, 0x5C, 128); /* the 128-byte value of 9F7C (long form 81 80) */
    bn += 128;
    assert_true(bn > 0);
    assert_int_equal(iso_tlv_parse(buf, (size_t)bn, it, 16, &n, &err), 0);
    assert_int_equal(n, 6);
    assert_int_equal(it[0].tag, 0x9F26);
    assert_int_equal(it[0].tag_len, 2);
    assert_int_equal(it[0].len, 8);
    assert_int_equal(it[1].tag, 0xDF8116);
    assert_int_equal(it[1].tag_len, 3);
    assert_int_equal(it[2].tag, 0x95);
    assert_int_equal(it[3].len_len, 3);
    assert_int_equal(it[3].len, 5);
    assert_int_equal(it[4].tag, 0x70);
    assert_true(iso_tlv_constructed(it[4].tag));
    assert_false(iso_tlv_constructed(0x9F26));
    assert_true(iso_tlv_constructed(0xBF0C));
    assert_int_equal(it[5].len, 128);
    assert_int_equal(it[5].len_len, 2);
    assert_non_null(iso_tlv_find(it, n, 0xDF8116));
    assert_null(iso_tlv_find(it, n, 0x9F27));
    /* byte-identical rebuild */
    assert_int_equal(iso_tlv_build(it, n, out, sizeof(out), &on, &err), 0);
    assert_int_equal(on, (size_t)bn);
    assert_memory_equal(out, buf, on);
    /* the constructed value parses as TLV one level down */
    struct iso_tlv inner[2];
    size_t ni;
    assert_int_equal(iso_tlv_parse(it[4].value, it[4].len, inner, 2, &ni, &err), 0);
    assert_int_equal(ni, 1);
    assert_int_equal(inner[0].tag, 0x5A);
    /* building from scratch uses minimal forms */
    uint8_t v[200] = { 0 };
    struct iso_tlv mk[2] = { { .tag = 0x91, .value = v, .len = 10 },
                             { .tag = 0x9F10, .value = v, .len = 200 } };
    assert_int_equal(iso_tlv_build(mk, 2, out, sizeof(out), &on, &err), 0);
    assert_int_equal(on, 2 + 10 + 4 + 200);
    assert_int_equal(out[0], 0x91);
    assert_int_equal(out[1], 10);
    assert_int_equal(out[12], 0x9F);
    assert_int_equal(out[14], 0x81);
    assert_int_equal(out[15], 200);
    mk[1].len_len = 1; /* too short for 200 */
    assert_int_equal(iso_tlv_build(mk, 2, out, sizeof(out), &on, &err), ISO_E_TLV);
    assert_int_equal(iso_tlv_build(mk, 1, out, 5, &on, &err), ISO_E_NOSPACE);
    /* cap */
    assert_int_equal(iso_tlv_parse(buf, (size_t)bn, it, 3, &n, &err), ISO_E_TLV_CAP);
    /* malformed */
    static const struct {
        const char *hex;
        size_t offset;
    } bad[] = {
        { "9F", 0 },                   /* truncated tag */
        { "9F26", 2 },                 /* tag without length */
        { "9F2681", 2 },               /* truncated long length */
        { "9F2608 01020304", 2 },      /* value past the end */
        { "9F2680 0000", 2 },          /* indefinite length */
        { "9F2685 0000000001 00", 2 }, /* 5-byte length */
        { "00", 0 },                   /* zero tag byte */
        { "9F8181818101 00", 0 },      /* tag longer than 4 bytes */
        { "9A03 251126 9F", 5 },       /* good item then truncated tag */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long k = golden_bytes(bad[i].hex, buf, sizeof(buf));
        uint8_t *p = malloc((size_t)k);
        memcpy(p, buf, (size_t)k);
        int rc = iso_tlv_parse(p, (size_t)k, it, 16, &n, &err);
        free(p);
        if (rc != ISO_E_TLV || err.offset != bad[i].offset)
            fail_msg("TLV '%s': rc %d offset %zu (%s)", bad[i].hex, rc, err.offset, err.reason);
    }
    assert_int_equal(iso_tlv_parse(buf, 0, it, 16, &n, &err), 0);
    assert_int_equal(n, 0);
}

static void test_framing(void **state)
{
    struct iso_frame fr;
    struct iso_err err;
    /* two 2-byte-length frames in one buffer, fed byte by byte */
    uint8_t buf[64];
    long bn = golden_bytes("0003 'ABC' 0002 'DE'", buf, sizeof(buf));
    size_t pos = 0, frames = 0;
    for (size_t avail = 0; avail <= (size_t)bn; avail++) {
        int rc = iso_frame_parse(ISO_FRAME_2B, 0, buf + pos, avail - pos, &fr, &err);
        assert_true(rc >= 0);
        if (rc == ISO_FRAME_NEED_MORE) {
            assert_true(fr.need > avail - pos);
            continue;
        }
        frames++;
        if (frames == 1)
            assert_memory_equal(buf + pos + fr.msg_off, "ABC", 3);
        else
            assert_memory_equal(buf + pos + fr.msg_off, "DE", 2);
        pos += fr.consume;
    }
    assert_int_equal(frames, 2);
    assert_int_equal(pos, (size_t)bn);
    /* several frames available at once */
    assert_int_equal(iso_frame_parse(ISO_FRAME_2B, 0, buf, (size_t)bn, &fr, &err), ISO_FRAME_READY);
    assert_int_equal(fr.consume, 5);
    /* too long: decided from the two header bytes alone */
    uint8_t big[2] = { 0x20, 0x01 };
    assert_int_equal(iso_frame_parse(ISO_FRAME_2B, 0, big, 2, &fr, &err), ISO_E_FRAME_TOO_LONG);
    assert_int_equal(iso_frame_parse(ISO_FRAME_2B, 100, (const uint8_t *)"\x00\x65", 2, &fr, &err),
                     ISO_E_FRAME_TOO_LONG);
    assert_int_equal(iso_frame_parse(ISO_FRAME_2B, 0, (const uint8_t *)"\x00\x00", 2, &fr, &err),
                     ISO_E_EMPTY);
    /* 4 ASCII digits */
    assert_int_equal(iso_frame_parse(ISO_FRAME_4A, 0, (const uint8_t *)"0003AB", 6, &fr, &err),
                     ISO_FRAME_NEED_MORE);
    assert_int_equal(fr.need, 7);
    assert_int_equal(iso_frame_parse(ISO_FRAME_4A, 0, (const uint8_t *)"0003ABC", 7, &fr, &err),
                     ISO_FRAME_READY);
    assert_int_equal(fr.msg_off, 4);
    assert_int_equal(iso_frame_parse(ISO_FRAME_4A, 0, (const uint8_t *)"00a3ABC", 7, &fr, &err),
                     ISO_E_FRAME_HEADER);
    assert_int_equal(err.offset, 2);
    assert_int_equal(iso_frame_parse(ISO_FRAME_4A, 0, (const uint8_t *)"0000", 4, &fr, &err),
                     ISO_E_EMPTY);
    assert_int_equal(iso_frame_parse(ISO_FRAME_4A, 0, (const uint8_t *)"9000", 4, &fr, &err),
                     ISO_E_FRAME_TOO_LONG);
    /* TPDU: the length covers TPDU + message */
    bn = golden_bytes("0008 6000120034 'XYZ'", buf, sizeof(buf));
    assert_int_equal(iso_frame_parse(ISO_FRAME_TPDU, 0, buf, 4, &fr, &err), ISO_FRAME_NEED_MORE);
    assert_int_equal(fr.need, 10);
    assert_int_equal(iso_frame_parse(ISO_FRAME_TPDU, 0, buf, (size_t)bn, &fr, &err),
                     ISO_FRAME_READY);
    assert_int_equal(fr.msg_off, 7);
    assert_int_equal(fr.msg_len, 3);
    assert_int_equal(fr.tpdu_off, 2);
    uint8_t tpdu[5];
    memcpy(tpdu, buf + fr.tpdu_off, 5);
    iso_tpdu_swap(tpdu);
    uint8_t want[5] = { 0x60, 0x00, 0x34, 0x00, 0x12 };
    assert_memory_equal(tpdu, want, 5);
    assert_int_equal(iso_frame_parse(ISO_FRAME_TPDU, 0, (const uint8_t *)"\x00\x05", 2, &fr, &err),
                     ISO_E_EMPTY);
    assert_int_equal(iso_frame_parse(ISO_FRAME_TPDU, 0, (const uint8_t *)"\x00\x03", 2, &fr, &err),
                     ISO_E_FRAME_HEADER);
    /* headers */
    uint8_t h[8];
    assert_int_equal(iso_frame_header(ISO_FRAME_2B, 0, 300, NULL, h, sizeof(h), &err), 0);
    assert_int_equal(h[0], 1);
    assert_int_equal(h[1], 44);
    assert_int_equal(iso_frame_header(ISO_FRAME_4A, 0, 300, NULL, h, sizeof(h), &err), 0);
    assert_memory_equal(h, "0300", 4);
    assert_int_equal(iso_frame_header(ISO_FRAME_TPDU, 0, 3, want, h, sizeof(h), &err), 0);
    assert_int_equal(h[1], 8);
    assert_memory_equal(h + 2, want, 5);
    assert_int_equal(iso_frame_header(ISO_FRAME_2B, 0, 9000, NULL, h, sizeof(h), &err),
                     ISO_E_FRAME_TOO_LONG);
    assert_int_equal(iso_frame_header(ISO_FRAME_2B, 0, 0, NULL, h, sizeof(h), &err), ISO_E_EMPTY);
    assert_int_equal(iso_frame_header(ISO_FRAME_2B, 0, 10, NULL, h, 1, &err), ISO_E_NOSPACE);
    enum iso_frame_kind k;
    assert_int_equal(iso_frame_kind_parse("tpdu", &k), 0);
    assert_int_equal(k, ISO_FRAME_TPDU);
    assert_int_equal(iso_frame_kind_parse("3b", &k), ISO_E_NOT_FOUND);
}

static void test_describe_masks(void **state)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    uint8_t wire[512];
    long wn = golden_bytes(goldens[0].wire, wire, sizeof(wire));
    struct iso_msg m;
    struct iso_err err;
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_unpack(d, wire, (size_t)wn, &m, &err), 0);
    /* DE 45 track 1 too */
    assert_int_equal(iso_set_str(&m, 45, "B4761739001010010^CARDHOLDER/TEST^2512201123456"), 0);
    static char out[8192];
    int n = iso_describe(d, &m, ISO_DESCRIBE_JSON, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "\"2\":\"476173******0010\""));
    assert_non_null(strstr(out, "\"35\":\"476173******0010=***\""));
    assert_non_null(strstr(out, "\"45\":\"B476173******0010^***\""));
    assert_non_null(strstr(out, "\"52\":\"[masked]\""));
    assert_non_null(strstr(out, "\"14\":\"[masked]\""));
    assert_non_null(strstr(out, "\"3\":\"000000\""));
    assert_non_null(strstr(out, "{\"tag\":\"9F26\",\"len\":8,\"value\":\"****************\"}"));
    assert_non_null(strstr(out, "{\"tag\":\"9F27\",\"len\":1,\"value\":\"80\"}"));
    assert_null(strstr(out, "739001010"));
    assert_null(strstr(out, "CARDHOLDER"));
    assert_null(strstr(out, "2512201123456789"));
    assert_null(strstr(out, "1122334455667788"));
    assert_null(strstr(out, "0102030405060708"));
    /* human form masks the same way */
    n = iso_describe(d, &m, 0, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "476173******0010"));
    assert_non_null(strstr(out, "9F26 (8) ****************"));
    assert_null(strstr(out, "739001010"));
    assert_null(strstr(out, "0102030405060708"));
    /* unmasked only on request */
    n = iso_describe(d, &m, ISO_DESCRIBE_JSON | ISO_DESCRIBE_UNMASKED, out, sizeof(out));
    assert_non_null(strstr(out, "\"2\":\"4761739001010010\""));
    assert_non_null(strstr(out, "\"52\":\"1122334455667788\""));
    assert_non_null(strstr(out, "\"55\":\"" G_DE55 "\""));
    /* truncation is reported, output stays terminated */
    n = iso_describe(d, &m, ISO_DESCRIBE_JSON, out, 20);
    assert_int_equal(n, ISO_E_NOSPACE);
    assert_int_equal(strlen(out), 19);
    /* DE 55 tags with card data: 5A masked as PAN, 57 as track 2 */
    uint8_t tlv[64];
    long tn = golden_bytes("5A08 4761739001010010 570C 4761739001010010D2512201", tlv, sizeof(tlv));
    assert_int_equal(iso_set(&m, 55, tlv, (size_t)tn), 0);
    n = iso_describe(d, &m, ISO_DESCRIBE_JSON, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "\"tag\":\"5A\",\"len\":8,\"value\":\"476173******0010\""));
    assert_non_null(strstr(out, "\"tag\":\"57\",\"len\":12,\"value\":\"476173******0010D***\""));
    assert_null(strstr(out, "739001010"));
    /* a b field carrying a PAN (binary BCD) is masked on its hex text */
    struct iso_dialect bd;
    const char *spec = "base ascii87b\nfield 2 b LL10 mask=pan\n";
    assert_int_equal(iso_dialect_parse(spec, strlen(spec), &bd, &err), 0);
    static const uint8_t bpan[8] = { 0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x00, 0x10 };
    struct iso_msg bm;
    iso_msg_init(&bm, NULL, 0);
    assert_int_equal(iso_set_mti(&bm, "0100"), 0);
    assert_int_equal(iso_set(&bm, 2, bpan, 8), 0);
    n = iso_describe(&bd, &bm, ISO_DESCRIBE_JSON, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "\"2\":\"476173******0010\""));
}

static void test_spec_file(void **state)
{
    struct iso_dialect d;
    struct iso_err err;
    const char *ok = "# my network\n"
                     "name mynet\n"
                     "base bcd87\n"
                     "tertiary no\n"
                     "field 48 ans LLL200   # shorter than the base\n"
                     "field 55 b LLL255 lenc=bcd mask=tlv\n"
                     "field 62 none\n";
    assert_int_equal(iso_dialect_parse(ok, strlen(ok), &d, &err), 0);
    assert_string_equal(d.name, "mynet");
    assert_int_equal(d.mti_enc, ISO_ENC_BCD);
    assert_int_equal(d.field[48].max_len, 200);
    assert_int_equal(d.field[48].len_enc, ISO_ENC_BCD);
    assert_int_equal(d.field[55].mask, ISO_MASK_TLV);
    assert_int_equal(d.field[62].type, ISO_T_NONE);
    assert_int_equal(d.field[2].mask, ISO_MASK_PAN); /* from the base */
    /* a bit for an undefined field is an error on unpack */
    uint8_t wire[64];
    long wn = golden_bytes("0200 0000000000000004 0003 'ABC'", wire, sizeof(wire));
    struct iso_msg m;
    iso_msg_init(&m, arena, sizeof(arena));
    assert_int_equal(iso_unpack(&d, wire, (size_t)wn, &m, &err), ISO_E_UNDEFINED);
    assert_int_equal(err.field, 62);
    assert_int_equal(err.offset, 10);

    static const struct {
        const char *text;
        size_t line;
    } bad[] = {
        { "name x\nfield 2 q LL19\n", 2 },
        { "field 2 n L19\n", 1 },
        { "field 2 n LL\n", 1 },
        { "field 1 n 4\n", 1 },
        { "field 193 n 4\n", 1 },
        { "field 2 n LL19 enc=hex\n", 0 },
        { "field 2 n LL190\n", 0 },
        { "field 2 b LL19 enc=ascii\n", 0 },
        { "field 2 x+n 1\n", 0 },
        { "field 2 n LL19 colour=red\n", 1 },
        { "field 130 n 4\n", 0 },
        { "field 48 ans LLL999 mask=tlv\n", 0 },
        { "bogus 1\n", 1 },
        { "mti octal\n", 1 },
        { "field 3 n 6\nbase ascii87\n", 2 },
        { "base nosuch\n", 1 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = iso_dialect_parse(bad[i].text, strlen(bad[i].text), &d, &err);
        if (rc != ISO_E_SPEC || err.offset != bad[i].line)
            fail_msg("spec '%s': rc %d line %zu (%s)", bad[i].text, rc, err.offset, err.reason);
    }
    assert_int_equal(iso_dialect_load("/nonexistent/x.spec", &d, &err), ISO_E_IO);
    /* the shipped example file loads */
    assert_int_equal(iso_dialect_load("iso8583/examples/mynet.spec", &d, &err), 0);
}

static void test_builtins(void **state)
{
    for (const char *const *n = iso_dialect_names; *n; n++) {
        const struct iso_dialect *d = iso_dialect_find(*n);
        assert_non_null(d);
        assert_string_equal(d->name, *n);
        /* facts from jPOS ISO87A/B packagers and the issue */
        assert_int_equal(d->field[35].type, ISO_T_Z);
        assert_int_equal(d->field[35].len_kind, ISO_LEN_LL);
        assert_int_equal(d->field[35].max_len, 37);
        assert_int_equal(d->field[90].max_len, 42);
        assert_int_equal(d->field[95].type, ISO_T_AN);
        assert_int_equal(d->field[43].max_len, 40);
        assert_int_equal(d->field[54].len_kind, ISO_LEN_LLL);
        assert_int_equal(d->field[54].max_len, 120);
        assert_int_equal(d->field[55].type, ISO_T_B);
        assert_int_equal(d->field[55].len_kind, ISO_LEN_LLL);
        assert_int_equal(d->field[48].type, ISO_T_ANS);
        assert_int_equal(d->field[52].max_len, 8);
        assert_int_equal(d->field[128].type, ISO_T_B);
        assert_int_equal(d->field[129].type, ISO_T_NONE);
        /* what transfers and conversions answer with (docs/acquirer-interface.md) */
        assert_int_equal(d->field[6].type, ISO_T_N); /* amount, cardholder billing */
        assert_int_equal(d->field[6].max_len, 12);
        assert_int_equal(d->field[10].max_len, 8);    /* conversion rate */
        assert_int_equal(d->field[15].type, ISO_T_N); /* settlement date MMDD */
        assert_int_equal(d->field[15].len_kind, ISO_LEN_FIXED);
        assert_int_equal(d->field[15].max_len, 4);
        assert_int_equal(d->field[28].type, ISO_T_XN); /* fee: 'C'/'D' + 8 digits */
        assert_int_equal(d->field[28].max_len, 9);
        assert_int_equal(d->field[44].len_kind, ISO_LEN_LL); /* a transfer's failed leg */
        assert_int_equal(d->field[44].max_len, 25);
        assert_int_equal(d->field[51].max_len, 3);
        assert_int_equal(d->field[103].type, ISO_T_ANS); /* a transfer's recipient */
        assert_int_equal(d->field[103].len_kind, ISO_LEN_LL);
        assert_int_equal(d->field[103].max_len, 28);
    }
    assert_null(iso_dialect_find("nosuch"));
    /* hand-built tables are checked before use */
    struct iso_dialect hand = *iso_dialect_find("ascii87");
    struct iso_err err;
    assert_int_equal(iso_dialect_validate(&hand, &err), 0);
    hand.field[7].len_kind = 9;
    assert_int_equal(iso_dialect_validate(&hand, &err), ISO_E_SPEC);
    assert_int_equal(err.field, 7);
    hand = *iso_dialect_find("ascii87");
    hand.field[3].data_enc = ISO_ENC_HEX;
    assert_int_equal(iso_dialect_validate(&hand, &err), ISO_E_SPEC);
    for (const char *const *n = iso_dialect_names; *n; n++)
        assert_int_equal(iso_dialect_validate(iso_dialect_find(*n), &err), 0);
    assert_int_equal(iso_dialect_find("ascii87")->field[52].data_enc, ISO_ENC_HEX);
    assert_int_equal(iso_dialect_find("ascii87b")->field[52].data_enc, ISO_ENC_BINARY);
    assert_int_equal(iso_dialect_find("bcd87")->field[55].len_enc, ISO_ENC_BCD);
    assert_string_equal(iso_strerror(ISO_E_TRUNCATED), "truncated");
    assert_string_equal(iso_strerror(12345), "unknown error");
}

static void test_rc_text(void **state)
{
    (void)state;
    assert_string_equal(iso_rc_text("51"), "insufficient funds");
    assert_string_equal(iso_rc_text("00"), "approved");
    assert_null(iso_rc_text("Z9"));
    assert_null(iso_rc_text("5"));
    static const char *const used[] = { "00", "05", "12", "13", "14", "15", "30",
                                        "51", "54", "55", "57", "58", "61", "62",
                                        "63", "65", "68", "75", "91", "94", "96" };
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
        const char *t = iso_rc_text(used[i]);
        assert_non_null(t);
        assert_true(strlen(t) <= 20); /* fits the console's column */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_both_ways),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_reason_has_no_value),
        cmocka_unit_test(test_pack_validation),
        cmocka_unit_test(test_arena_limits),
        cmocka_unit_test(test_views),
        cmocka_unit_test(test_msg_copy_for_response),
        cmocka_unit_test(test_tertiary),
        cmocka_unit_test(test_tlv),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_describe_masks),
        cmocka_unit_test(test_hex_field_every_byte),
        cmocka_unit_test(test_charset_every_byte),
        cmocka_unit_test(test_spec_file),
        cmocka_unit_test(test_builtins),
        cmocka_unit_test(test_rc_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
