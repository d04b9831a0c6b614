/* Hex for the unit tests' data: test vectors and golden messages are written as hex, and what a
 * test computes is compared as hex. One pair for every unit test, which links only its own
 * module (iso8583 and libhsm do not export one). Include after <cmocka.h>: a bad literal fails
 * the test. */
#ifndef ATLAS_TEST_HEX_H
#define ATLAS_TEST_HEX_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The bytes of the hex literal hex (either case, an even number of digits) into out, which
 * has room for strlen(hex) / 2 bytes: their count. */
static inline size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex);
    assert_true(n % 2 == 0);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

/* The n bytes of in as upper-case hex into out (room for 2 * n + 1), NUL-terminated. */
static inline void tohex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02X", in[i]);
    out[2 * n] = '\0';
}

#endif
