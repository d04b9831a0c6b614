/* Internals shared by proto.c (framing, dispatch, field parsers) and
 * commands.c (one handler per host command). Not a public header. */
#ifndef ATLAS_HSM_PROTO_INT_H
#define ATLAS_HSM_PROTO_INT_H

#include "proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* payShield error codes used by the simulator (payshield.md §0). */
enum {
    HSM_E_OK = 0,
    HSM_E_VERIFY = 1,   /* verification failure */
    HSM_E_KEY_LEN = 2,  /* inappropriate key length */
    HSM_E_KEY_TYPE = 4, /* invalid key type code */
    HSM_E_KEY_LEN_FLAG = 5,
    HSM_E_SRC_PARITY = 10, /* source key parity error */
    HSM_E_DST_PARITY = 11, /* destination key parity error */
    HSM_E_LMK = 13,        /* master key parity error / invalid LMK id */
    HSM_E_INPUT = 15,      /* invalid input data */
    HSM_E_PIN_BLOCK = 20,  /* PIN block does not contain valid values */
    HSM_E_INDEX = 21,
    HSM_E_ACCOUNT = 22,  /* invalid account number */
    HSM_E_PIN_FMT = 23,  /* invalid PIN block format code */
    HSM_E_PIN_LEN = 24,  /* PIN fewer than 4 or more than 12 digits */
    HSM_E_DECTAB = 25,   /* decimalization table error */
    HSM_E_SCHEME = 26,   /* invalid key scheme */
    HSM_E_INCOMPAT = 27, /* incompatible key length */
    HSM_E_BAD_TYPE = 28, /* invalid key type */
    HSM_E_NOT_PERMITTED = 29,
    HSM_E_INTERNAL = 41,
    HSM_E_CRYPTO = 42,
    HSM_E_HEADER = 51,   /* invalid message header */
    HSM_E_NFIELDS = 52,  /* invalid number of command fields */
    HSM_E_DATA_LEN = 80, /* data length error */
};

/* A read cursor over the fields of one command (after the command code). */
struct hsm_cur {
    const char *p;
    size_t n;
    size_t off;
};

/* Where a response's fields are written (after the error code). */
struct hsm_out {
    char *p;
    size_t len;
    size_t cap;
};

/* A key field as it appears on the wire: optional scheme letter + hex. */
struct hsm_keyf {
    char scheme;     /* 0 (none), 'Z', 'U', 'T', 'X', 'Y', 'A', 'S' / 'R' (key block) */
    const char *hex; /* points into the request */
    size_t hexlen;   /* 16, 32 or 48 */
};

/* Shape of a key field. */
enum hsm_keyshape {
    HSM_KEY_ANY,  /* 16H | Z+16H | U/X+32H | T/Y+48H ("16H or 1A+32H or 1A+48H") */
    HSM_KEY_PAIR, /* 32H (two singles, e.g. CVK A‖B) | U/X+32H | T/Y+48H */
    HSM_KEY_AES,  /* A+32H only (libhsm's AES scheme; 'A' is also a hex digit, so an
                     AES key is only accepted where nothing else is) */
};

#define HSM_MUST_USE __attribute__((warn_unused_result))

/* Field parsers: each returns 0 or a payShield error code (15 when data is
 * short or has a wrong character class), and advances the cursor on success. */
HSM_MUST_USE int hsm_cur_take(struct hsm_cur *c, size_t n, const char **out);
HSM_MUST_USE int hsm_cur_hex(struct hsm_cur *c, size_t n, const char **out);
HSM_MUST_USE int hsm_cur_digits(struct hsm_cur *c, size_t n, const char **out);
HSM_MUST_USE int hsm_cur_num(struct hsm_cur *c, size_t n, unsigned *out);
HSM_MUST_USE int hsm_cur_hexnum(struct hsm_cur *c, size_t n, unsigned *out);
HSM_MUST_USE int hsm_cur_char(struct hsm_cur *c, char *out);
HSM_MUST_USE int hsm_cur_delim(struct hsm_cur *c, char d);
bool hsm_cur_peek(const struct hsm_cur *c, char ch);
size_t hsm_cur_left(const struct hsm_cur *c);
HSM_MUST_USE int hsm_cur_key(struct hsm_cur *c, enum hsm_keyshape shape, struct hsm_keyf *k);
/* A key block field: prefix ('S' under the key-block LMK, 'R' a TR-31 block under a ZMK) then
 * the block, whose length is its own characters 2-5 (k->hex = the block, k->hexlen = its
 * length, k->scheme = prefix). 26 when the field does not start with prefix, 15 when the
 * length is not 4 digits, the block is not printable or runs past the fields. */
HSM_MUST_USE int hsm_cur_keyblock(struct hsm_cur *c, char prefix, struct hsm_keyf *k);
/* Digits up to (not including) the delimiter d (which is consumed), between
 * min and max of them. */
HSM_MUST_USE int hsm_cur_digits_until(struct hsm_cur *c, char d, size_t min, size_t max,
                                      const char **out, size_t *len);
/* End of the command: accepts an optional LMK identifier "%00" (the only LMK
 * loaded), then requires the end. Trailing fields → 52. */
HSM_MUST_USE int hsm_cur_end(struct hsm_cur *c);

/* Response builders; on overflow they mark the output full (→ error 41). */
void hsm_out_str(struct hsm_out *o, const char *s, size_t n);
void hsm_out_cstr(struct hsm_out *o, const char *s);
void hsm_out_hex(struct hsm_out *o, const uint8_t *b, size_t n);
void hsm_out_num(struct hsm_out *o, unsigned v, unsigned width);

typedef int (*hsm_handler)(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out);

/* One row per host command. min_len/max_len bound the field bytes after the
 * command code (checked before the handler runs: short → 15, long → 52). */
struct hsm_cmd_def {
    char code[3];
    char resp[3];
    hsm_handler fn;
    uint16_t min_len;
    uint16_t max_len;
    const char *name;
};

extern const struct hsm_cmd_def hsm_commands[];
extern const size_t hsm_n_commands;

/* Crypto context kept by struct hsm_proto (commands.c). */
struct hsm_crypto;
HSM_MUST_USE int hsm_crypto_new(const char *lmk_path, const char *lmk_keyblock_path,
                                struct hsm_crypto **out, char *err, size_t errcap);
void hsm_crypto_free(struct hsm_crypto *c);
struct hsm_crypto *hsm_proto_crypto(struct hsm_proto *p);
/* 16-hex LMK check value into out[17]. */
void hsm_crypto_lmk_kcv(struct hsm_crypto *c, char out[17]);

#endif
