/* Keys from clear hex for the unit tests that drive libhsm (test_hsm, test_hsm_proto): a bad
 * literal or a key libhsm refuses fails the test. Include after <cmocka.h>, hsm.h and
 * test_hex.h. */
#ifndef ATLAS_UNIT_TEST_KEYS_H
#define ATLAS_UNIT_TEST_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A key of type t made by from_clear (hsm_key_from_clear or _aes) from clear hex; released by
 * the caller. */
static inline struct hsm_key *clear_key(int (*from_clear)(enum hsm_keytype, const uint8_t *, size_t,
                                                          struct hsm_key **),
                                        enum hsm_keytype t, const char *hex)
{
    uint8_t k[32];
    assert_true(strlen(hex) <= 2 * sizeof k);
    size_t n = unhex(hex, k);
    struct hsm_key *key = NULL;
    assert_int_equal(from_clear(t, k, n, &key), HSM_OK);
    return key;
}

/* A (DES) key of type t from clear hex. */
static inline struct hsm_key *ck(enum hsm_keytype t, const char *hex)
{
    return clear_key(hsm_key_from_clear, t, hex);
}

/* An AES key of type t from clear hex. */
static inline struct hsm_key *cka(enum hsm_keytype t, const char *hex)
{
    return clear_key(hsm_key_from_clear_aes, t, hex);
}

#endif
