/* Unit tests of libatlas_db's pure parts: the spool format (round trip, torn tail ignored, CRC
 * mismatch detected), record validation, the partition date (also against the gmtime_r/timegm
 * version it replaced), the PAN HMAC and seal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_internal.h"

static void sample(struct db_auth_record *r, unsigned i)
{
    db_auth_record_init(r);
    memcpy(r->request_date, "2026-11-26", 11);
    memcpy(r->acquirer_id, "ACQ1", 5);
    memcpy(r->terminal_id, "TERM \"\\1", 9); /* quotes and backslash survive */
    snprintf(r->stan, sizeof r->stan, "%06u", i);
    memcpy(r->transmission_time, "1126150615", 11);
    memcpy(r->mti, "0200", 5);
    memcpy(r->pan_masked, "476173******0119", 17);
    r->has_pan_hmac = true;
    for (int k = 0; k < 32; k++)
        r->pan_hmac[k] = (uint8_t)(255 - k);
    r->amount_minor = 123456789012LL;
    r->currency = 952;
    r->outcome = DB_OUTCOME_TIMEOUT;
    r->created_us = 1795000000123456ULL;
    r->lat_pin_us = 77;
}

static void test_crc32c_vector(void **state)
{
    /* The CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xE3069283. */
    assert_int_equal(spool_crc32c("123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = { 0 };
    assert_int_equal(spool_crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of 0 */
}

static void test_roundtrip(void **state)
{
    struct db_auth_record a, b;
    uint8_t buf[SPOOL_MAX_RECORD];
    sample(&a, 42);
    size_t n = spool_encode(&a, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(spool_decode(buf, n, &b), 0);
    assert_memory_equal(&a.request_date, &b.request_date, sizeof a.request_date);
    assert_string_equal(a.terminal_id, b.terminal_id);
    assert_string_equal(a.stan, b.stan);
    assert_string_equal(a.pan_masked, b.pan_masked);
    assert_memory_equal(a.pan_hmac, b.pan_hmac, 32);
    assert_true(b.has_pan_hmac);
    assert_int_equal(b.amount_minor, a.amount_minor);
    assert_int_equal(b.currency, 952);
    assert_int_equal(b.outcome, DB_OUTCOME_TIMEOUT);
    assert_int_equal(b.created_us, a.created_us);
    assert_int_equal(b.lat_pin_us, 77);
    assert_int_equal(b.lat_mac_us, -1);
    assert_string_equal(b.rrn, "");
    assert_false(db_billing_converted(&b.billing));
    /* Version 4 keeps a conversion (DE 6/10/51). */
    a.billing = (struct db_billing){ 1683, "70168277", 504 };
    n = spool_encode(&a, buf, sizeof buf);
    assert_int_equal(spool_decode(buf, n, &b), 0);
    assert_int_equal(b.billing.amount_minor, 1683);
    assert_string_equal(b.billing.rate, "70168277");
    assert_int_equal(b.billing.currency, 504);
    /* Truncated or padded payloads are refused. */
    assert_int_equal(spool_decode(buf, n - 1, &b), -1);
    buf[n] = 0;
    assert_int_equal(spool_decode(buf, n + 1, &b), -1);
    buf[0] = 9; /* unknown version */
    assert_int_equal(spool_decode(buf, n, &b), -1);
}

/* Writes a spool of n frames; returns the file size and each frame's start in starts[]. */
static long write_spool(const char *path, unsigned n, long *starts)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(SPOOL_MAGIC, 1, SPOOL_MAGIC_LEN, f);
    long off = SPOOL_MAGIC_LEN;
    for (unsigned i = 0; i < n; i++) {
        struct db_auth_record r;
        uint8_t frame[SPOOL_FRAME_HDR + SPOOL_MAX_RECORD];
        sample(&r, i);
        size_t len = spool_frame(&r, frame, sizeof frame);
        assert_true(len > SPOOL_FRAME_HDR);
        starts[i] = off;
        fwrite(frame, 1, len, f);
        off += (long)len;
    }
    fclose(f);
    return off;
}

static int read_all(const char *path, unsigned *ok)
{
    struct spool_reader rd;
    struct db_auth_record r;
    assert_int_equal(spool_reader_open(&rd, path), 0);
    *ok = 0;
    enum spool_read_status s;
    while ((s = spool_reader_next(&rd, &r)) == SPOOL_READ_OK) {
        char want[7];
        snprintf(want, sizeof want, "%06u", *ok);
        assert_string_equal(r.stan, want); /* in order */
        (*ok)++;
    }
    spool_reader_close(&rd);
    return s;
}

static void flip(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

static void test_reader(void **state)
{
    char path[] = "/tmp/atlas-spool-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    long starts[5];
    unsigned ok;

    long size = write_spool(path, 5, starts);
    assert_int_equal(read_all(path, &ok), SPOOL_READ_END);
    assert_int_equal(ok, 5);

    /* A torn last frame (a crash mid-write: never acknowledged) is ignored, at any cut. */
    for (long cut = starts[4] + 1; cut < size; cut += 7) {
        write_spool(path, 5, starts);
        assert_int_equal(truncate(path, cut), 0);
        assert_int_equal(read_all(path, &ok), SPOOL_READ_TORN);
        assert_int_equal(ok, 4);
    }

    /* A flipped byte inside an earlier frame is corruption, detected by the CRC; the frames
     * before it are still read. */
    write_spool(path, 5, starts);
    flip(path, starts[2] + SPOOL_FRAME_HDR + 5);
    assert_int_equal(read_all(path, &ok), SPOOL_READ_CORRUPT);
    assert_int_equal(ok, 2);
    /* A damaged length is corruption too. */
    write_spool(path, 5, starts);
    flip(path, starts[1] + 2);
    assert_int_equal(read_all(path, &ok), SPOOL_READ_CORRUPT);
    assert_int_equal(ok, 1);

    /* A bad magic: not a spool. */
    write_spool(path, 1, starts);
    flip(path, 0);
    struct spool_reader rd;
    assert_int_equal(spool_reader_open(&rd, path), -1);
    unlink(path);
    assert_int_equal(spool_reader_open(&rd, path), 1); /* missing: nothing to replay */
}

static void test_record_check(void **state)
{
    struct db_auth_record r;
    struct db_error err;
    sample(&r, 1);
    assert_int_equal(db_auth_record_check(&r, &err), 0);
    sample(&r, 1);
    memcpy(r.mti, "02x0", 5);
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    assert_non_null(strstr(err.message, "mti"));
    sample(&r, 1);
    r.currency = 1000;
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    sample(&r, 1);
    r.created_us = 0;
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    sample(&r, 1);
    memcpy(r.request_date, "2027-02-29", 11); /* not a leap year */
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    memcpy(r.request_date, "2028-02-29", 11);
    assert_int_equal(db_auth_record_check(&r, &err), 0);
    sample(&r, 1);
    memset(r.acquirer_id, 'A', sizeof r.acquirer_id); /* not terminated */
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    /* DE 6/10/51: all three or none, DE 10 eight digits with at most 7 decimals. */
    sample(&r, 1);
    r.billing = (struct db_billing){ 1683, "70168277", 504 };
    assert_int_equal(db_auth_record_check(&r, &err), 0);
    r.billing.currency = -1;
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    assert_non_null(strstr(err.message, "billing"));
    r.billing = (struct db_billing){ 1683, "90168277", 504 };
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
    r.billing = (struct db_billing){ -1, "70168277", -1 };
    assert_int_equal(db_auth_record_check(&r, &err), DB_E_INVALID);
}

static void test_request_date(void **state)
{
    char d[11];
    /* 2026-11-26 15:00 UTC */
    uint64_t now = 1795705200ULL * 1000000ULL;
    db_request_date("1126150615", now, d);
    assert_string_equal(d, "2026-11-26");
    db_request_date("1231235959", 1798761600ULL * 1000000ULL, d); /* 2027-01-01 00:00 */
    assert_string_equal(d, "2026-12-31"); /* DE 7 from just before midnight of the year end */
    db_request_date("0101000001", 1798761540ULL * 1000000ULL, d); /* 2026-12-31 23:59 */
    assert_string_equal(d, "2027-01-01");
    db_request_date("1399000000", now, d); /* invalid: falls back to today */
    assert_string_equal(d, "2026-11-26");
    db_request_date("0229120000", now, d); /* no Feb 29 in 2025-2027: not a date, today */
    assert_string_equal(d, "2026-11-26");
    db_request_date("0229235959", 1835481600ULL * 1000000ULL, d); /* 2028-03-01 00:00 */
    assert_string_equal(d, "2028-02-29");
    db_request_date(NULL, now, d);
    assert_string_equal(d, "2026-11-26");
}

/* db_request_date as it was written with gmtime_r, timegm and snprintf: the reference the
 * arithmetic version must agree with. */
static void ref_request_date(const char *de7, uint64_t now_us, char out[11])
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    time_t now = (time_t)(now_us / 1000000);
    struct tm tm;
    char tmp[48];
    gmtime_r(&now, &tm);
    int y = tm.tm_year + 1900, month = 0, day = 0, best_y = y;
    bool ok = de7 && strlen(de7) == 10;
    for (int i = 0; ok && i < 10; i++)
        ok = de7[i] >= '0' && de7[i] <= '9';
    if (ok) {
        month = (de7[0] - '0') * 10 + (de7[1] - '0');
        day = (de7[2] - '0') * 10 + (de7[3] - '0');
        ok = month >= 1 && month <= 12 && day >= 1;
    }
    long best = -1;
    for (int cy = y - 1; ok && cy <= y + 1; cy++) {
        bool leap = (cy % 4 == 0 && cy % 100 != 0) || cy % 400 == 0;
        if (day > (month == 2 && leap ? 29 : mdays[month - 1]))
            continue;
        struct tm c = { .tm_year = cy - 1900, .tm_mon = month - 1, .tm_mday = day };
        long cd = (long)(timegm(&c) / 86400), nd = (long)(now / 86400);
        long dist = cd > nd ? cd - nd : nd - cd;
        if (best < 0 || dist < best) {
            best = dist;
            best_y = cy;
        }
    }
    if (best >= 0)
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", best_y, month, day);
    else
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", y, tm.tm_mon + 1, tm.tm_mday);
    memcpy(out, tmp, 10);
    out[10] = '\0';
}

static void test_request_date_matches_libc_version(void **state)
{
    uint64_t x = 88172645463325252u;
    char de7[11], got[11], want[11];
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* now: 1970..2199; DE 7 month 00..14 and day 00..33 (so invalid ones too), near the
         * year's edges half of the time. */
        uint64_t now = x % 7258118400u * 1000000u + x % 1000000u;
        unsigned m = (unsigned)(x >> 40) % 15, d = (unsigned)(x >> 48) % 34;
        if (i & 1) {
            m = (x >> 20) & 1 ? 12 : 1;
            if (m == 12 && d < 28)
                d += 4;
        }
        snprintf(de7, sizeof de7, "%02u%02u%06u", m, d, (unsigned)(x % 1000000u));
        db_request_date(de7, now, got);
        ref_request_date(de7, now, want);
        assert_string_equal(got, want);
    }
    /* Every date around two year ends, against nows on both sides of midnight. */
    static const uint64_t nows[] = { 1798761540u, 1798761600u, 1830297540u,
                                     1830297600u, 4102444740u, 4102444800u };
    for (size_t k = 0; k < sizeof nows / sizeof nows[0]; k++)
        for (unsigned m = 1; m <= 12; m++)
            for (unsigned d = 1; d <= 31; d++) {
                snprintf(de7, sizeof de7, "%02u%02u235959", m, d);
                db_request_date(de7, nows[k] * 1000000u, got);
                ref_request_date(de7, nows[k] * 1000000u, want);
                assert_string_equal(got, want);
            }
}

static void test_pan_hmac_and_seal(void **state)
{
    const uint8_t key[16] = "0123456789abcdef";
    uint8_t mac[32];
    /* Reference: Python hmac.new(b"0123456789abcdef", b"4761739001010119", sha256). */
    static const uint8_t want[32] = {
        0x7a, 0xb3, 0x85, 0xa4, 0xcd, 0xeb, 0xa0, 0x24, 0x08, 0xd0, 0x8f,
        0xb5, 0x98, 0x36, 0x42, 0x67, 0x7f, 0x31, 0xb7, 0x07, 0x4c, 0x83,
        0x44, 0x48, 0xe8, 0xd5, 0xba, 0x84, 0x37, 0x16, 0xb5, 0x08,
    };
    assert_int_equal(db_pan_hmac(key, 16, "4761739001010119", 16, mac), 0);
    assert_memory_equal(mac, want, 32);
    assert_int_equal(db_pan_hmac(key, 8, "4761739001010119", 16, mac), DB_E_INVALID);
    assert_int_equal(db_pan_hmac(key, 16, "47617390010101x9", 16, mac), DB_E_INVALID);

    uint8_t k32[32], sealed[64];
    char pan[20];
    for (int i = 0; i < 32; i++)
        k32[i] = (uint8_t)i;
    int n = db_pan_seal(k32, "4761739001010119", 16, sealed, sizeof sealed);
    assert_int_equal(n, 16 + 28);
    assert_null(memmem(sealed, (size_t)n, "4761739001010119", 16));
    assert_int_equal(db_pan_open(k32, sealed, (size_t)n, pan, sizeof pan), 16);
    assert_string_equal(pan, "4761739001010119");
    sealed[20] ^= 1; /* tampered ciphertext: refused */
    assert_int_equal(db_pan_open(k32, sealed, (size_t)n, pan, sizeof pan), DB_E_INVALID);
    sealed[20] ^= 1;
    k32[0] ^= 1; /* wrong key: refused */
    assert_int_equal(db_pan_open(k32, sealed, (size_t)n, pan, sizeof pan), DB_E_INVALID);
    /* The precomputed hasher gives the same MACs, for short and long keys. */
    {
        uint8_t long_key[100], a[32], b[32];
        for (size_t k = 0; k < sizeof long_key; k++)
            long_key[k] = (uint8_t)(k * 7 + 1);
        const size_t lens[] = { 16, 32, 64, 65, 100 };
        for (size_t L = 0; L < sizeof lens / sizeof lens[0]; L++) {
            struct db_pan_hasher *h = NULL;
            assert_int_equal(db_pan_hasher_new(long_key, lens[L], &h), 0);
            const char *pans[] = { "4761739001010119", "489001000000001", "1234567890123456789" };
            for (size_t p = 0; p < 3; p++) {
                assert_int_equal(db_pan_hmac(long_key, lens[L], pans[p], strlen(pans[p]), a), 0);
                assert_int_equal(db_pan_hasher_mac(h, pans[p], strlen(pans[p]), b), 0);
                assert_memory_equal(a, b, 32);
            }
            assert_int_equal(db_pan_hasher_mac(h, "12345", 5, b), DB_E_INVALID);
            db_pan_hasher_free(h);
        }
        struct db_pan_hasher *h = NULL;
        assert_int_equal(db_pan_hasher_new(long_key, 8, &h), DB_E_INVALID);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vector),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_record_check),
        cmocka_unit_test(test_request_date),
        cmocka_unit_test(test_request_date_matches_libc_version),
        cmocka_unit_test(test_pan_hmac_and_seal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
