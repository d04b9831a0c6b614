/* libhsm: payment cryptography for hsm-sim, hsmtool and the tests. Keys under a
 * payShield-style variant LMK, PIN blocks, PIN verification (IBM 3624, Visa PVV),
 * CVV, MACs, DUKPT (TDES and AES), EMV ARQC/ARPC, TR-31 key blocks (wrap, unwrap,
 * import/export under a ZMK) and an optional AES key-block LMK whose keys carry their
 * usage, mode of use and exportability. Pure: no sockets, no logging.
 *
 * Conventions of this header
 * - Every fallible function returns 0 (HSM_OK) or a negative enum hsm_err whose
 *   absolute value is the payShield error code (HSM_ERR_VERIFY = -1 = "01"), so the
 *   daemon can answer hsm_err_code(rc) directly.
 * - Clear keys live only inside struct hsm_key (opaque); they are wiped with
 *   OPENSSL_cleanse when the key is released or evicted. Functions whose name ends in
 *   _clear take or return clear key bytes: they exist for hsmtool and the tests
 *   (lab use), the daemon never needs them.
 * - PINs are NUL-terminated digit strings (4..12 digits). PANs/account numbers are
 *   digit strings: for ISO 0/1/3 and PVV/CVV the "pan" argument is either the full
 *   PAN (13..19 digits, the 12 right-most digits excluding the check digit are used)
 *   or the 12-digit account number field of a payShield command (used as it is);
 *   for ISO 4 it is the full PAN (1..19 digits).
 * - A struct hsm is not thread-safe: use one per thread (one per event loop).
 */
#ifndef ATLAS_HSM_H
#define ATLAS_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HSM_MUST_CHECK __attribute__((warn_unused_result))

/* Negative payShield error codes. */
enum hsm_err {
    HSM_OK = 0,
    HSM_ERR_VERIFY = -1,         /* 01 verification failure (PIN, MAC, CVV, PVV, ARQC) */
    HSM_ERR_KEY_LENGTH = -2,     /* 02 inappropriate key length for the operation */
    HSM_ERR_KEY_TYPE_CODE = -4,  /* 04 invalid key type code */
    HSM_ERR_KEY_LEN_FLAG = -5,   /* 05 invalid key length flag */
    HSM_ERR_SRC_PARITY = -10,    /* 10 (source) key parity error */
    HSM_ERR_DST_PARITY = -11,    /* 11 destination key parity error */
    HSM_ERR_LMK_PARITY = -13,    /* 13 master key (LMK) parity error */
    HSM_ERR_INPUT = -15,         /* 15 invalid input data */
    HSM_ERR_PIN_BLOCK = -20,     /* 20 PIN block does not contain valid values */
    HSM_ERR_INDEX = -21,         /* 21 invalid index value (e.g. PVKI) */
    HSM_ERR_ACCOUNT = -22,       /* 22 invalid account number */
    HSM_ERR_PIN_FORMAT = -23,    /* 23 invalid PIN block format code */
    HSM_ERR_PIN_LENGTH = -24,    /* 24 PIN fewer than 4 or more than 12 digits */
    HSM_ERR_DECTAB = -25,        /* 25 decimalization table error */
    HSM_ERR_KEY_SCHEME = -26,    /* 26 invalid key scheme */
    HSM_ERR_KEY_INCOMPAT = -27,  /* 27 incompatible key length (e.g. ISO 4 with a DES key) */
    HSM_ERR_KEY_TYPE = -28,      /* 28 invalid key type (key separation refused it) */
    HSM_ERR_NOT_PERMITTED = -29, /* 29 function not permitted */
    HSM_ERR_INTERNAL = -41,      /* 41 internal error (allocation, cache full of pinned keys) */
    HSM_ERR_CRYPTO = -42,        /* 42 DES/AES failure inside OpenSSL */
    HSM_ERR_DATA_LENGTH = -80,   /* 80 data length error */
};

/* Two-digit payShield error code for rc (0 -> "00", -1 -> "01", any value that is
 * not an enum hsm_err -> "41"). Static storage. */
const char *hsm_err_code(int rc);

/* Short English description of rc, for operators. Never contains key or PIN data. */
const char *hsm_strerror(int rc);

/* ---------------------------------------------------------------- key types */

/* Key types and where they live under the variant LMK (payShield key type code
 * "VPP": V = variant 0..9, PP = LMK pair code). Keys with the same code are the
 * same thing to the LMK (TMK/TPK/PVK all 002); the operations still check the
 * declared type, so a key loaded as ZPK can never be used as a PVK. */
enum hsm_keytype {
    HSM_KT_ZMK,     /* 000: LMK 04-05 v0, zone master key */
    HSM_KT_ZPK,     /* 001: LMK 06-07 v0, zone PIN key */
    HSM_KT_TMK,     /* 002: LMK 14-15 v0, terminal master key */
    HSM_KT_TPK,     /* 002: LMK 14-15 v0, terminal PIN key */
    HSM_KT_PVK,     /* 002: LMK 14-15 v0, PIN verification key (IBM 3624, Visa PVV) */
    HSM_KT_CVK,     /* 402: LMK 14-15 v4, card verification key (CVV/CVV2/iCVV) */
    HSM_KT_TAK,     /* 003: LMK 16-17 v0, terminal authentication (MAC) key */
    HSM_KT_ZAK,     /* 008: LMK 26-27 v0, zone authentication (MAC) key */
    HSM_KT_BDK,     /* 009: LMK 28-29 v0, TDES DUKPT base derivation key */
    HSM_KT_MK_AC,   /* 109: LMK 28-29 v1, EMV issuer master key for AC (IMK-AC) */
    HSM_KT_ZEK,     /* 00A: LMK 30-31 v0, zone encryption key */
    HSM_KT_BDK_AES, /* 909: LMK 28-29 v9, AES DUKPT BDK (Atlas extension, scheme 'A') */
    HSM_KT_max
};

/* Name ("ZPK"), payShield code ("001"), or NULL / HSM_ERR_KEY_TYPE_CODE. */
const char *hsm_keytype_name(enum hsm_keytype t);
const char *hsm_keytype_code(enum hsm_keytype t);
HSM_MUST_CHECK int hsm_keytype_from_name(const char *name, enum hsm_keytype *out);
/* 3-character code ("002" yields the first type with that code: TMK). */
HSM_MUST_CHECK int hsm_keytype_from_code(const char *code3, enum hsm_keytype *out);

/* Key schemes: how a key is written (under the LMK or under a ZMK).
 * Z (or no prefix) single DES 16H; U double 32H (halves under scheme variants A6,
 * 5A); T triple 48H (6A, DE, 2B); X double / Y triple (X9.17: no scheme variant);
 * A: AES-128 32H (Atlas extension: halves under scheme variants 3C, C3; allowed for
 * BDK-AES, which is AES only, and for ZPK, TPK, TAK, ZAK, ZEK, which are DES keys
 * in every other scheme). Unprefixed 32H / 48H are read as X / Y. */
enum hsm_scheme {
    HSM_SCHEME_Z = 'Z',
    HSM_SCHEME_U = 'U',
    HSM_SCHEME_T = 'T',
    HSM_SCHEME_X = 'X',
    HSM_SCHEME_Y = 'Y',
    HSM_SCHEME_A = 'A',
    HSM_SCHEME_S = 'S', /* 'S' + a TR-31 version D key block under the key-block LMK
                           (hsm_lmk_keyblock_load); see "TR-31 key blocks" below */
};

/* Characters occupied by the key field at s (at most avail characters), for
 * parsing command fields: 16 for an unprefixed single key, 1+32 for U/X/A, 1+48
 * for T/Y. An unprefixed key is taken as 16H (payShield's rule for fields whose
 * length is not announced). 'A' is also a hex digit, so a leading 'A' is read as
 * the first digit of a 16H key here; a caller expecting an AES key checks for
 * 'A' + 32H itself (hsm_key_load tells them apart by length: 33 characters).
 * Returns 0, HSM_ERR_KEY_SCHEME (unknown prefix) or HSM_ERR_INPUT (too short /
 * not hex). */
HSM_MUST_CHECK int hsm_keytext_len(const char *s, size_t avail, size_t *len);

/* ---------------------------------------------------------------- the HSM state */

/* LMK set + key cache. Opaque. */
struct hsm;

/* The number of LMK pairs (00-01 ... 38-39). */
#define HSM_LMK_PAIRS 20

/* The Thales test LMK set (payshield.md §11) every hsm starts with: pair i ("2i-2i+1") as 32
 * hex characters, for tests and lab tools that write an LMK file (hsm_lmk_load's format). */
extern const char *const hsm_test_lmk[HSM_LMK_PAIRS];

/* Creates an HSM holding the Thales test LMK set (payshield.md §11) and a key cache
 * of cache_entries slots (raised to 8 if smaller; 0 means 1024; at most 2^20). *out
 * is owned by the caller (hsm_free). Returns 0, HSM_ERR_INPUT, HSM_ERR_CRYPTO (the
 * default provider lacks a cipher) or HSM_ERR_INTERNAL. */
HSM_MUST_CHECK int hsm_new(struct hsm **out, size_t cache_entries);

/* Wipes the LMK and every cached key, frees h. NULL is fine. All keys loaded from
 * h must have been released. */
void hsm_free(struct hsm *h);

/* Replaces the LMK set by the one in the file at path (format in docs/hsm.md:
 * "# comment" lines and 20 lines "00-01 <32 hex>" ... "38-39 <32 hex>", every key odd
 * parity, every pair present once). The key cache is flushed. On error h keeps its
 * previous LMK and err (if non-NULL) gets a sentence naming the line, never key
 * data. Returns 0, HSM_ERR_INPUT, HSM_ERR_LMK_PARITY, or HSM_ERR_NOT_PERMITTED
 * while keys loaded from h are still pinned. */
HSM_MUST_CHECK int hsm_lmk_load(struct hsm *h, const char *path, char *err, size_t errlen);

/* Loads an AES key-block LMK from the file at path ("# comment" lines and one line of 32, 48
 * or 64 hex characters: AES-128/192/256). With it, keys may also be written under the LMK as
 * scheme 'S' ('S' + a TR-31 version D block whose header carries the key's usage, mode of use
 * and exportability, enforced on every use); the variant LMK stays loaded and keeps serving
 * the other schemes. Flushes the key cache. err as hsm_lmk_load. Returns 0, HSM_ERR_INPUT, or
 * HSM_ERR_NOT_PERMITTED while keys are pinned. */
HSM_MUST_CHECK int hsm_lmk_keyblock_load(struct hsm *h, const char *path, char *err, size_t errlen);

/* Whether h has a key-block LMK. */
bool hsm_has_keyblock_lmk(const struct hsm *h);

/* The LMK check value answered by NC: TDES encryption of 8 zero bytes under LMK
 * pair 00-01, as 16 upper-case hex characters + NUL. */
void hsm_lmk_check_value(const struct hsm *h, char out[17]);

/* ---------------------------------------------------------------- keys */

/* A clear key with its cached cipher contexts. Opaque. */
struct hsm_key;

/* Looks up / decrypts the key written as text (len characters: optional scheme
 * prefix + hex, as hsm_keytext_len measures) under the LMK pair and variant of
 * type. The clear key and its key schedules are kept in h's cache (keyed by type +
 * text), so a hot key costs one hash lookup. *out is pinned until released with
 * hsm_key_release(); at most a handful of keys should be pinned at once (the cache
 * never evicts a pinned key; HSM_ERR_INTERNAL if every slot is pinned).
 * Errors: HSM_ERR_KEY_SCHEME, HSM_ERR_INPUT (not hex, wrong length for the scheme),
 * HSM_ERR_KEY_INCOMPAT (scheme not allowed for the type: 'A' for a DES-only type,
 * anything but 'A' for BDK-AES), HSM_ERR_SRC_PARITY (decrypted DES key not odd parity; the
 * caller answers 11 instead when the key is a destination key). */
HSM_MUST_CHECK int hsm_key_load(struct hsm *h, enum hsm_keytype type, const char *text, size_t len,
                                struct hsm_key **out);

/* Builds a key of type from clear bytes (lab use: hsmtool, tests, bench): a DES
 * key of 8, 16 or 24 bytes (parity is NOT enforced here; see hsm_parity_check),
 * except for BDK-AES which takes an AES key of 16, 24 or 32 bytes. The key is owned by the caller
 * and freed with hsm_key_release(). Returns 0, HSM_ERR_KEY_LENGTH or
 * HSM_ERR_INTERNAL. */
HSM_MUST_CHECK int hsm_key_from_clear(enum hsm_keytype type, const uint8_t *clear, size_t len,
                                      struct hsm_key **out);

/* Same for an AES key (16, 24 or 32 bytes) of a type that may be AES: ZPK/TPK
 * (ISO 4 PIN blocks), TAK/ZAK (AES-CMAC), ZEK, BDK-AES. HSM_ERR_KEY_TYPE for the
 * DES-only types. */
HSM_MUST_CHECK int hsm_key_from_clear_aes(enum hsm_keytype type, const uint8_t *clear, size_t len,
                                          struct hsm_key **out);

/* Unpins a key from hsm_key_load, or wipes and frees one from hsm_key_from_clear.
 * NULL is fine. */
void hsm_key_release(struct hsm_key *k);

enum hsm_keytype hsm_key_type(const struct hsm_key *k);
size_t hsm_key_length(const struct hsm_key *k); /* 8, 16, 24 (DES) or 16, 24, 32 (AES) */
bool hsm_key_is_aes(const struct hsm_key *k);

/* Key check value: first 8 bytes of the key's encryption of a zero block (DES:
 * TDES-ECB of 8 zero bytes; AES: AES-ECB of 16 zero bytes). Callers print 3 bytes
 * (6H, A0/A6/BU "KCV") or 8 bytes (16H). */
void hsm_key_kcv(struct hsm_key *k, uint8_t kcv[8]);

/* Same from clear bytes (DES if aes is false). HSM_ERR_KEY_LENGTH on bad length. */
HSM_MUST_CHECK int hsm_kcv_clear(const uint8_t *key, size_t len, bool aes, uint8_t kcv[8]);

/* Generates a random key of type (odd parity for DES) in scheme (Z, U, T, X, Y; A
 * for AES types) and writes it under the LMK as text (scheme prefix except for Z)
 * + NUL into out (cap >= 50), and its KCV. Returns 0, HSM_ERR_KEY_SCHEME,
 * HSM_ERR_INPUT (cap) or HSM_ERR_CRYPTO. */
HSM_MUST_CHECK int hsm_key_generate(struct hsm *h, enum hsm_keytype type, enum hsm_scheme scheme,
                                    char *out, size_t cap, uint8_t kcv[8]);

/* hsm_key_generate in scheme S (a double-length DES key, AES-128 for BDK-AES, under the
 * key-block LMK) with its header's mode of use, key version number and exportability chosen:
 * mode 0, kvn NULL, exportability 0 keep the type's defaults (docs/hsm.md); mode may only
 * narrow the default (C -> G or V, B -> E or D), exportability E, S or N. Returns 0,
 * HSM_ERR_KEY_SCHEME (no key-block LMK), HSM_ERR_NOT_PERMITTED (a widening), HSM_ERR_INPUT. */
HSM_MUST_CHECK int hsm_key_generate_kb(struct hsm *h, enum hsm_keytype type, char mode,
                                       const char *kvn, char exportability, char *out, size_t cap,
                                       uint8_t kcv[8]);

/* Writes k under the LMK (as hsm_key_generate does) in scheme, e.g. to store a key
 * typed in clear by hsmtool. Same errors. */
HSM_MUST_CHECK int hsm_key_to_lmk(struct hsm *h, struct hsm_key *k, enum hsm_scheme scheme,
                                  char *out, size_t cap);

/* Exports k under zmk (type ZMK, or TMK for a terminal key download) in scheme (Z/U/T/X/Y, length
 * must match k): payShield A0 mode 1 / A8. Text + NUL into out (cap >= 50). Returns 0,
 * HSM_ERR_KEY_TYPE (zmk not a ZMK), HSM_ERR_KEY_SCHEME, HSM_ERR_KEY_INCOMPAT. */
HSM_MUST_CHECK int hsm_key_export(struct hsm_key *zmk, struct hsm_key *k, enum hsm_scheme scheme,
                                  char *out, size_t cap);

/* Imports the key written as text (len chars, scheme prefix + hex) under zmk
 * (payShield A6) as a key of type, re-encrypted under the LMK in lmk_scheme.
 * atalla_variant 0..9 (0 = none) XORs byte 0 of the ZMK with variant*8 first
 * (Atalla key-type variant). The imported key must have odd parity
 * (HSM_ERR_DST_PARITY otherwise). Writes the LMK text + NUL into out and the KCV. */
HSM_MUST_CHECK int hsm_key_import(struct hsm *h, struct hsm_key *zmk, enum hsm_keytype type,
                                  const char *text, size_t len, enum hsm_scheme lmk_scheme,
                                  int atalla_variant, char *out, size_t cap, uint8_t kcv[8]);

/* The device side of a key download: the key written as text (scheme prefix + hex) under kek (a
 * TMK or ZMK, as hsm_key_export wrote it) into a clear key object of type in *out (the caller
 * releases it). Returns 0, HSM_ERR_KEY_TYPE (kek), HSM_ERR_KEY_SCHEME, HSM_ERR_DST_PARITY (not a
 * key under this kek). */
HSM_MUST_CHECK int hsm_key_unwrap(struct hsm_key *kek, enum hsm_keytype type, const char *text,
                                  size_t len, struct hsm_key **out);

/* Odd-parity helpers for DES keys. check: true if every byte has odd parity. */
bool hsm_parity_check(const uint8_t *key, size_t len);
void hsm_parity_fix(uint8_t *key, size_t len);

/* n bytes from OpenSSL RAND_bytes. Returns 0 or HSM_ERR_CRYPTO. */
HSM_MUST_CHECK int hsm_random(uint8_t *buf, size_t n);

/* ---------------------------------------------------------------- PIN blocks */

/* PIN block formats. Values are the ISO 9564-1 format numbers; IBM 3624 is the
 * payShield "03" (PIN, F-padded, no PAN). */
enum hsm_pinfmt {
    HSM_PINFMT_ISO0 = 0,     /* payShield 01 (ANSI X9.8) */
    HSM_PINFMT_ISO1 = 1,     /* payShield 05 */
    HSM_PINFMT_ISO3 = 3,     /* payShield 47 */
    HSM_PINFMT_ISO4 = 4,     /* payShield 48 (AES, 16-byte block) */
    HSM_PINFMT_IBM3624 = 36, /* payShield 03 (IBM 3624 / Diebold, F pad) */
};

/* payShield 2-digit format code <-> enum. HSM_ERR_PIN_FORMAT for unknown codes. */
HSM_MUST_CHECK int hsm_pinfmt_from_code(const char code[2], enum hsm_pinfmt *out);
const char *hsm_pinfmt_code(enum hsm_pinfmt f);
/* ISO number (0, 1, 3, 4) -> enum, as hsmtool's --format takes it. */
HSM_MUST_CHECK int hsm_pinfmt_from_iso(int n, enum hsm_pinfmt *out);

/* Block size of a format: 16 for ISO 4, 8 otherwise. */
size_t hsm_pinfmt_block_len(enum hsm_pinfmt f);

/* Builds the clear PIN block of pin for pan in format f into out (8 or 16 bytes,
 * *outlen set). Fill digits (ISO 1, 3, 4) come from RAND_bytes. Returns 0,
 * HSM_ERR_PIN_LENGTH, HSM_ERR_INPUT (PIN not digits), HSM_ERR_ACCOUNT,
 * HSM_ERR_PIN_FORMAT. */
HSM_MUST_CHECK int hsm_pinblock_encode(enum hsm_pinfmt f, const char *pin, const char *pan,
                                       uint8_t out[16], size_t *outlen);

/* Same with a caller-given fill (for deterministic test vectors): fill is 8 bytes
 * (ISO 4 random half, PIN field bytes 8..15) or, for ISO 1/3, the source of the
 * fill nibbles (ISO 3 maps them to A..F). Lab use. */
HSM_MUST_CHECK int hsm_pinblock_encode_fill(enum hsm_pinfmt f, const char *pin, const char *pan,
                                            const uint8_t fill[8], uint8_t out[16], size_t *outlen);

/* Extracts the PIN from the clear block blk (len must be the format's block
 * length) into pin (NUL-terminated, at most 12 digits). ISO 4 blk is the clear
 * *PIN field* (already separated from the PAN field, see hsm_pin_decrypt). Checks
 * control nibble, length, digits and fill: HSM_ERR_PIN_BLOCK, HSM_ERR_PIN_LENGTH,
 * HSM_ERR_ACCOUNT, HSM_ERR_PIN_FORMAT, HSM_ERR_DATA_LENGTH (len). */
HSM_MUST_CHECK int hsm_pinblock_decode(enum hsm_pinfmt f, const uint8_t *blk, size_t len,
                                       const char *pan, char pin[13]);

/* ISO 4 PAN field (16 bytes) of pan. HSM_ERR_ACCOUNT if pan is not 1..19 digits. */
HSM_MUST_CHECK int hsm_iso4_pan_field(const char *pan, uint8_t out[16]);

/* Encrypts pin for pan in format f under key (TPK/ZPK; AES key for ISO 4, DES key
 * otherwise: HSM_ERR_KEY_INCOMPAT). Lab use and tests. */
HSM_MUST_CHECK int hsm_pin_encrypt(struct hsm_key *key, enum hsm_pinfmt f, const char *pin,
                                   const char *pan, uint8_t out[16], size_t *outlen);

/* Same with a caller-given fill (see hsm_pinblock_encode_fill): deterministic
 * blocks for test vectors. Lab use. */
HSM_MUST_CHECK int hsm_pin_encrypt_fill(struct hsm_key *key, enum hsm_pinfmt f, const char *pin,
                                        const char *pan, const uint8_t fill[8], uint8_t out[16],
                                        size_t *outlen);

/* Decrypts blk (format f) under key and extracts the PIN into pin. Lab use (hsmtool
 * pinblock decode --key); the daemon uses the operations below, which never hand
 * out a clear PIN. */
HSM_MUST_CHECK int hsm_pin_decrypt(struct hsm_key *key, enum hsm_pinfmt f, const uint8_t *blk,
                                   size_t len, const char *pan, char pin[13]);

/* PIN translation (payShield CA: TPK -> ZPK, CC: ZPK -> ZPK), with optional format
 * change. src must be a TPK or ZPK, dst a ZPK (HSM_ERR_KEY_TYPE otherwise). pan is
 * used by both formats. On success out holds the new block (*outlen 8 or 16) and
 * *pin_len the PIN length. max_pin_len (4..12, or 0 for 12) bounds the PIN:
 * HSM_ERR_PIN_LENGTH if longer. */
HSM_MUST_CHECK int hsm_pin_translate(struct hsm_key *src, enum hsm_pinfmt src_fmt,
                                     const uint8_t *blk, size_t len, struct hsm_key *dst,
                                     enum hsm_pinfmt dst_fmt, const char *pan, int max_pin_len,
                                     uint8_t out[16], size_t *outlen, int *pin_len);

/* ---------------------------------------------------------------- PIN verification */

/* IBM 3624. dectab: 16 decimal digits (HSM_ERR_DECTAB otherwise). vdata: 16 hex
 * characters of validation data (see hsm_ibm_vdata for payShield's 12-char form
 * with 'N'). The natural PIN is TDES(pvk, vdata) with its hex digits decimalised
 * through dectab; PIN = natural + offset digit-wise mod 10. pvk must be a PVK. */

/* Offset (pin length digits + NUL) for pin. */
HSM_MUST_CHECK int hsm_ibm_offset(struct hsm_key *pvk, const char *pin, const char dectab[16],
                                  const char vdata[16], char offset[13]);

/* PIN (n digits, 4..12, + NUL) that the given offset (n digits) produces. */
HSM_MUST_CHECK int hsm_ibm_pin_from_offset(struct hsm_key *pvk, const char *offset,
                                           const char dectab[16], const char vdata[16],
                                           char pin[13]);

/* payShield validation data: 12 characters of hex and 'N'; the 'N' position
 * receives the last 5 digits of the 12-digit account number field (acct12),
 * and the result is right-padded with 'F' to 16 characters. */
HSM_MUST_CHECK int hsm_ibm_vdata(const char *vdata12, const char *acct12, char out[17]);

/* Verifies the PIN inside blk (under pin_key: TPK for DA, ZPK for EA) against an
 * IBM offset: the check_len (4..12) left-most PIN digits must equal natural+offset.
 * offset holds at least check_len digits (an F-padded 12H field is fine). Returns
 * 0, HSM_ERR_VERIFY, or the decode / key errors above. */
HSM_MUST_CHECK int hsm_pin_verify_ibm(struct hsm_key *pin_key, enum hsm_pinfmt f,
                                      const uint8_t *blk, size_t len, const char *pan,
                                      struct hsm_key *pvk, int check_len, const char dectab[16],
                                      const char vdata[16], const char *offset);

/* Visa PVV: TSP = 11 right-most account digits (excluding the check digit) ||
 * PVKI (0..9) || 4 left-most PIN digits; PVV = 4 digits of TDES(pvk, TSP),
 * decimal digits first then A..F as 0..5. pvk must be a PVK (double length). */
HSM_MUST_CHECK int hsm_pvv_generate(struct hsm_key *pvk, const char *pan, int pvki, const char *pin,
                                    char pvv[5]);

/* Verifies the PIN inside blk (TPK for DC, ZPK for EC) against pvv (4 digits). */
HSM_MUST_CHECK int hsm_pin_verify_pvv(struct hsm_key *pin_key, enum hsm_pinfmt f,
                                      const uint8_t *blk, size_t len, const char *pan,
                                      struct hsm_key *pvk, int pvki, const char pvv[4]);

/* ---------------------------------------------------------------- CVV */

/* Visa CVV / CVV2 / iCVV (service code 000 for CVV2, 999 for iCVV by convention):
 * cvk is a double-length CVK (A||B; HSM_ERR_KEY_LENGTH otherwise). pan up to 19
 * digits, exp YYMM, svc 3 digits. Writes 3 digits + NUL. */
HSM_MUST_CHECK int hsm_cvv_generate(struct hsm_key *cvk, const char *pan, const char exp[4],
                                    const char svc[3], char cvv[4]);
/* 0 or HSM_ERR_VERIFY (constant-time compare). */
HSM_MUST_CHECK int hsm_cvv_verify(struct hsm_key *cvk, const char *pan, const char exp[4],
                                  const char svc[3], const char cvv[3]);

/* ---------------------------------------------------------------- MACs */

enum hsm_macalg {
    HSM_MAC_ISO9797_1 = 1, /* CBC-MAC with the key's cipher (DES or 2/3TDEA) */
    HSM_MAC_ISO9797_3 = 3, /* retail MAC / ANSI X9.19: single-DES chain, TDES last
                            * (K1,K2,K1; K1,K2,K3 with a triple-length key) */
    HSM_MAC_TDES_CMAC = 5, /* SP 800-38B CMAC with TDES */
    HSM_MAC_AES_CMAC = 6,  /* SP 800-38B / RFC 4493 CMAC with AES */
};

/* Padding for the ISO 9797-1 algorithms: 1 zeros (at least one block), 2 0x80 then
 * zeros, 3 (1999 form) a 64-bit big-endian bit-length block prepended then zeros.
 * Ignored for CMAC. */
enum hsm_macpad { HSM_PAD_1 = 1, HSM_PAD_2 = 2, HSM_PAD_3 = 3 };

/* Full MAC of data under key (TAK or ZAK; HSM_ERR_KEY_TYPE otherwise; alg 3 needs
 * a double- or triple-length DES key, CMAC a key of its algorithm:
 * HSM_ERR_KEY_INCOMPAT). Writes
 * 8 bytes (DES) or 16 (AES-CMAC) into mac and the length into *maclen. No
 * allocation after the key's first MAC. */
HSM_MUST_CHECK int hsm_mac_generate(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                                    const uint8_t *data, size_t len, uint8_t mac[16],
                                    size_t *maclen);

/* Verifies the left-most maclen bytes (4..full length) of the MAC in constant time.
 * 0, HSM_ERR_VERIFY, or the errors above. */
HSM_MUST_CHECK int hsm_mac_verify(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                                  const uint8_t *data, size_t len, const uint8_t *mac,
                                  size_t maclen);

/* ---------------------------------------------------------------- DUKPT */

/* TDES DUKPT (ANSI X9.24-1:2009): KSN is 10 bytes (callers left-pad shorter KSNs
 * with FF); BDK is double length. Variants applied to the current (transaction)
 * key: PIN ^ 00..FF00..FF, MAC request ^ 00..FF00.., MAC response ^ 00..FF000000..,
 * data request / response = data variants followed by the 2009 one-way step. */
enum hsm_dukpt_usage {
    HSM_DUKPT_PIN,
    HSM_DUKPT_MAC_REQ,
    HSM_DUKPT_MAC_RESP,
    HSM_DUKPT_DATA_REQ,
    HSM_DUKPT_DATA_RESP,
};

/* Clear derivations (lab use: hsmtool dukpt, tests). 0 or HSM_ERR_KEY_LENGTH /
 * HSM_ERR_CRYPTO. */
HSM_MUST_CHECK int hsm_dukpt_ipek_clear(const uint8_t bdk[16], const uint8_t ksn[10],
                                        uint8_t ipek[16]);
HSM_MUST_CHECK int hsm_dukpt_txn_key_clear(const uint8_t bdk[16], const uint8_t ksn[10],
                                           uint8_t key[16]);
HSM_MUST_CHECK int hsm_dukpt_variant_clear(const uint8_t txn_key[16], enum hsm_dukpt_usage u,
                                           uint8_t out[16]);

/* AES DUKPT (ANSI X9.24-3:2017), AES-128 BDK, working keys AES-128. KSN is 12
 * bytes: initial key ID (8) || transaction counter (4, big-endian). */
enum hsm_dukpt_aes_usage {
    HSM_AESDUKPT_PIN = 0x1000,
    HSM_AESDUKPT_MAC_GEN = 0x2000,
    HSM_AESDUKPT_MAC_VER = 0x2001,
    HSM_AESDUKPT_MAC_BOTH = 0x2002,
    HSM_AESDUKPT_DATA_ENC = 0x3000,
    HSM_AESDUKPT_DATA_DEC = 0x3001,
    HSM_AESDUKPT_DATA_BOTH = 0x3002,
};
HSM_MUST_CHECK int hsm_dukpt_aes_initial_key_clear(const uint8_t bdk[16], const uint8_t ikid[8],
                                                   uint8_t key[16]);
HSM_MUST_CHECK int hsm_dukpt_aes_txn_key_clear(const uint8_t bdk[16], const uint8_t ksn[12],
                                               uint8_t key[16]);
HSM_MUST_CHECK int hsm_dukpt_aes_working_key_clear(const uint8_t txn_key[16], const uint8_t ksn[12],
                                                   enum hsm_dukpt_aes_usage u, uint8_t key[16]);

/* PIN translation from DUKPT to a ZPK (payShield CI / G0; AES via the command the
 * daemon documents). bdk is a BDK (TDES: ksn 10 bytes, source block ISO 0 under
 * the PIN variant) or BDK_AES (ksn 12 bytes, source block ISO 4 under the AES PIN
 * key). src_fmt is the format of the source block. dst must be a ZPK. Output as
 * hsm_pin_translate. */
HSM_MUST_CHECK int hsm_dukpt_pin_translate(struct hsm_key *bdk, const uint8_t *ksn, size_t ksnlen,
                                           enum hsm_pinfmt src_fmt, const uint8_t *blk, size_t len,
                                           struct hsm_key *dst, enum hsm_pinfmt dst_fmt,
                                           const char *pan, int max_pin_len, uint8_t out[16],
                                           size_t *outlen, int *pin_len);

/* Verifies a MAC made by a DUKPT device over data (TDES: ISO 9797-1 alg 3 pad 1
 * under the MAC request variant; AES: AES-CMAC under the working key with usage
 * 2000, the key the device generated with): the left-most maclen bytes (4..8 TDES,
 * 4..16 AES). 0 or HSM_ERR_VERIFY. */
HSM_MUST_CHECK int hsm_dukpt_mac_verify(struct hsm_key *bdk, const uint8_t *ksn, size_t ksnlen,
                                        const uint8_t *data, size_t len, const uint8_t *mac,
                                        size_t maclen);

/* ---------------------------------------------------------------- EMV */

/* Session key derivation applied to the ICC master key before the AC. */
enum hsm_emv_skd {
    HSM_EMV_SKD_NONE,   /* the ICC master key itself (e.g. Visa CVN 10) */
    HSM_EMV_SKD_COMMON, /* EMV 4.x common session key from the 8-byte value R */
};

/* Clear derivations for tests and hsmtool. pan: 1..19 digits, psn 2 digits. */
HSM_MUST_CHECK int hsm_emv_icc_mk_clear(const uint8_t imk[16], const char *pan, const char *psn,
                                        uint8_t mk[16]);
HSM_MUST_CHECK int hsm_emv_session_key_clear(const uint8_t mk[16], const uint8_t r[8],
                                             uint8_t sk[16]);

/* ARQC verification (payShield KQ): derives the ICC MK (option A) from imk (type
 * MK_AC) with pan/psn, then the session key per skd and r (ignored for NONE),
 * computes ISO 9797-1 alg 3 with EMV padding (80 00..) over data and compares with
 * arqc in constant time. 0 or HSM_ERR_VERIFY. */
HSM_MUST_CHECK int hsm_emv_arqc_verify(struct hsm_key *imk, const char *pan, const char *psn,
                                       enum hsm_emv_skd skd, const uint8_t r[8],
                                       const uint8_t *data, size_t len, const uint8_t arqc[8]);

/* The ARQC those inputs produce (tests, issuer-sim card emulation). */
HSM_MUST_CHECK int hsm_emv_arqc_generate(struct hsm_key *imk, const char *pan, const char *psn,
                                         enum hsm_emv_skd skd, const uint8_t r[8],
                                         const uint8_t *data, size_t len, uint8_t arqc[8]);

/* The same with the padding chosen: HSM_PAD_2 (80 00.., EMV 4.x, Visa CVN 18 — what the
 * two functions above use) or HSM_PAD_1 (zeros to a multiple of 8, nothing when aligned:
 * Visa CVN 10). Any other pad, or PAD_1 over no data: HSM_ERR_INPUT. */
HSM_MUST_CHECK int hsm_emv_arqc_verify_pad(struct hsm_key *imk, const char *pan, const char *psn,
                                           enum hsm_emv_skd skd, const uint8_t r[8],
                                           enum hsm_macpad pad, const uint8_t *data, size_t len,
                                           const uint8_t arqc[8]);
HSM_MUST_CHECK int hsm_emv_arqc_generate_pad(struct hsm_key *imk, const char *pan, const char *psn,
                                             enum hsm_emv_skd skd, const uint8_t r[8],
                                             enum hsm_macpad pad, const uint8_t *data, size_t len,
                                             uint8_t arqc[8]);

/* ARPC method 1 = TDES(key, ARQC xor (ARC || 00*6)) with the same key the ARQC used
 * (the ICC MK or the session key, per skd). */
HSM_MUST_CHECK int hsm_emv_arpc1(struct hsm_key *imk, const char *pan, const char *psn,
                                 enum hsm_emv_skd skd, const uint8_t r[8], const uint8_t arqc[8],
                                 const uint8_t arc[2], uint8_t arpc[8]);

/* ---------------------------------------------------------------- TR-31 key blocks */

/* Unwraps a TR-31 / ANSI X9.143 key block (len ASCII characters) under the clear
 * key block protection key kbpk: version A or C (TDES variant binding; KBPK 8, 16
 * or 24 bytes), B (TDES CMAC derivation binding; 16 or 24) or D (AES CMAC
 * derivation binding; 16, 24 or 32). The MAC is verified (constant time) before
 * anything is returned: HSM_ERR_VERIFY if it does not match. On success writes the
 * 16-character fixed header + NUL and the clear key (*keylen bytes, at most cap).
 * Errors: HSM_ERR_INPUT (malformed), HSM_ERR_DATA_LENGTH, HSM_ERR_KEY_LENGTH. Lab
 * use (hsmtool tr31). */
HSM_MUST_CHECK int hsm_tr31_unwrap_clear(const uint8_t *kbpk, size_t kbpk_len, const char *block,
                                         size_t len, char header[17], uint8_t *key, size_t cap,
                                         size_t *keylen);

/* The fixed header of a key block, parsed and validated: version A-D, length equal to the
 * block's, key usage (X9.143 table or two digits), algorithm (A D E H R S T or a digit), mode
 * of use (B C D E G N S T V X Y or a digit), key version number (2 alphanumerics, "00" =
 * none), exportability (E N S), number of optional blocks (2N; each one's length checked, the
 * extended-length form included), reserved "00". hlen is the header length with the optional
 * blocks. Returns 0, HSM_ERR_INPUT or HSM_ERR_DATA_LENGTH. */
struct hsm_tr31_header {
    char version;
    size_t length;
    char usage[3];
    char algorithm;
    char mode;
    char kvn[3];
    char exportability;
    int nopt;
    size_t hlen;
};
HSM_MUST_CHECK int hsm_tr31_header_parse(const char *block, size_t len,
                                         struct hsm_tr31_header *hdr);

/* As hsm_tr31_unwrap_clear, giving the parsed header and the random pad that followed the
 * key (padcap bytes at most; pad may be NULL). Lab use (tests re-wrap published blocks). */
HSM_MUST_CHECK int hsm_tr31_unwrap_clear_pad(const uint8_t *kbpk, size_t kbpk_len,
                                             const char *block, size_t len,
                                             struct hsm_tr31_header *hdr, uint8_t *key, size_t cap,
                                             size_t *keylen, uint8_t *pad, size_t padcap,
                                             size_t *padlen);

/* Wraps the clear key (8..32 bytes, a multiple of 8) under kbpk in the version of header[0]
 * (A, B, C or D; KBPK lengths as for unwrapping). header is the header with its optional
 * blocks (hlen characters, a multiple of 8; its length field is overwritten, the rest is
 * validated as hsm_tr31_header_parse does). pad: the padding after the key (padlen bytes,
 * 2 + keylen + padlen a multiple of the block size) or NULL for random padding that masks the
 * key length (as long as a triple-length DES key, or an AES-256 key for version D). Writes
 * the block + NUL into out. Returns 0, HSM_ERR_INPUT, HSM_ERR_KEY_LENGTH, HSM_ERR_DATA_LENGTH
 * or HSM_ERR_CRYPTO. Lab use. */
HSM_MUST_CHECK int hsm_tr31_wrap_clear(const uint8_t *kbpk, size_t kbpk_len, const char *header,
                                       size_t hlen, const uint8_t *key, size_t keylen,
                                       const uint8_t *pad, size_t padlen, char *out, size_t cap);

/* What a command wants to do with a key; hsm_key_permits checks it against the mode of use
 * and exportability of a key that came from a key block (keys under the variant LMK have no
 * such attributes and are permitted everything their type allows). */
enum hsm_key_use {
    HSM_USE_GENERATE, /* MAC / CVV generation: mode C, G or N */
    HSM_USE_VERIFY,   /* MAC / CVV / PIN (PVK) verification: C, V or N */
    HSM_USE_ENCRYPT,  /* encrypt or wrap (destination PIN key, KBPK on export): B, E or N */
    HSM_USE_DECRYPT,  /* decrypt or unwrap (source PIN key, KBPK on import): B, D or N */
    HSM_USE_DERIVE,   /* derive keys (BDK, IMK): X or N */
    HSM_USE_EXPORT,   /* leave the HSM under a KEK: exportability E or S */
};
/* 0 or HSM_ERR_NOT_PERMITTED (29). */
HSM_MUST_CHECK int hsm_key_permits(const struct hsm_key *k, enum hsm_key_use use);

/* Key usage and mode of use of k as a key block header would carry them (its own if it came
 * from one, else the defaults of its type), e.g. "P0" and 'B'. */
void hsm_key_usage(const struct hsm_key *k, char usage[3], char *mode, char *exportability);

/* payShield-style import of a TR-31 block (A6 with key scheme 'R'): unwraps block under kbpk
 * (a ZMK or TMK whose mode of use permits unwrapping; version B or A/C under a TDES KBPK, D
 * under an AES one), checks the header's usage and algorithm against type
 * (HSM_ERR_KEY_TYPE_CODE, 04, when they do not fit: a P0 block cannot become a TAK) and
 * writes the key under the LMK in lmk_scheme (Z/U/T/X/Y/A: variant LMK, the header's
 * attributes are dropped; S: key-block LMK, they are kept) + NUL into out, and its KCV.
 * HSM_ERR_VERIFY (01) when the block does not authenticate under kbpk. */
HSM_MUST_CHECK int hsm_tr31_import(struct hsm *h, struct hsm_key *kbpk, enum hsm_keytype type,
                                   const char *block, size_t len, enum hsm_scheme lmk_scheme,
                                   char *out, size_t cap, uint8_t kcv[8]);

/* payShield-style export as a TR-31 block (A8 with key scheme 'R'): k under kbpk (ZMK/TMK,
 * mode permitting wrapping; version B for a TDES KBPK, D for an AES one). Usage and mode come
 * from k (hsm_key_usage); mode (0 = keep) may only narrow it (C -> G or V, B -> E or D,
 * else HSM_ERR_NOT_PERMITTED); kvn 2 characters (NULL = "00"); exportability 0 = keep ('E'
 * for a variant-LMK key), or 'N' / 'E' / 'S' no wider than k's. A key whose exportability is
 * N is refused (HSM_ERR_NOT_PERMITTED). Block + NUL into out. */
HSM_MUST_CHECK int hsm_tr31_export(struct hsm_key *kbpk, struct hsm_key *k, char mode,
                                   const char *kvn, char exportability, char *out, size_t cap);

#endif
