/* libhsm private face: the key object, the HSM state and the cipher helpers the
 * algorithm files share. Nothing outside hsm-sim/lib includes this header. */
#ifndef ATLAS_HSM_INTERNAL_H
#define ATLAS_HSM_INTERNAL_H

#include <stdint.h>

#include <openssl/des.h>
#include <openssl/evp.h>

#include "hsm.h"

/* The single-DES functions (key.c) need OpenSSL's low-level DES API, which
 * OPENSSL_API_COMPAT >= 30000 or an OpenSSL built no-deprecated leaves out. */
#ifdef OPENSSL_NO_DEPRECATED_3_0
#error "libhsm needs OpenSSL's deprecated DES_* functions"
#endif

/* scheme letter + 48 hex, or 'S' + a version D key block under the key-block LMK (header 16,
 * 2 length bytes + key masked to 32 + pad = 48 bytes = 96H, MAC 32H: 145) with room for small
 * optional blocks. textlen is a uint8_t. */
#define HSM_KEYTEXT_MAX 200

/* TR-31 attributes of a key that came from a key block (under the key-block LMK or imported
 * with its header); set false for keys under the variant LMK, which have no attributes but
 * their type. */
struct hsm_kb_attrs {
    bool set;
    char usage[3]; /* "P0" */
    char alg;      /* 'T', 'D', 'A' */
    char mode;     /* 'B', 'C', 'G', 'V', ... */
    char kvn[3];   /* "00" */
    char exp;      /* 'E', 'N', 'S' */
};

/* A clear key and its key schedules. Lives either in an hsm's cache (owner set)
 * or alone (owner NULL, from hsm_key_from_clear). The contexts are allocated the
 * first time they are needed and then only re-keyed, so a slot reused by the
 * cache costs no allocation. A schedule is made on first use and its ready flag
 * set; wiping scrubs exactly the schedules whose flag is set. */
struct hsm_key {
    enum hsm_keytype type;
    bool aes;
    uint8_t len;         /* 8/16/24 DES, 16/24/32 AES */
    uint8_t clear[32];   /* the clear key (natural length) */
    uint8_t ede[24];     /* DES: K1||K2||K3 as handed to OpenSSL (K3 = K1 for 2TDEA) */
    EVP_CIPHER_CTX *enc; /* ECB encrypt, full key */
    EVP_CIPHER_CTX *dec; /* ECB decrypt, full key */
    EVP_CIPHER_CTX *cbc; /* CBC encrypt, full key (ISO 9797-1 alg 1) */
    EVP_CIPHER_CTX *aux; /* scratch for keys derived from this one (DUKPT, EMV) */
    EVP_MAC_CTX *cmac;
    struct hsm_key *derived; /* re-keyed per use for keys derived from this one */
    bool enc_ready, dec_ready, cbc_ready, k1_ready, cmac_ready; /* schedule made */
    struct hsm_kb_attrs kb; /* key-block attributes (kb.set false: none) */

    /* cache bookkeeping (owner != NULL) */
    struct hsm *owner;
    uint32_t refs;
    uint32_t hash;
    int32_t hnext;              /* next slot in the hash chain, -1 = end */
    int32_t lru_prev, lru_next; /* unpinned list, -1 = end */
    bool in_use;
    uint8_t textlen;
    char text[HSM_KEYTEXT_MAX + 1];

    /* last: the fields above are touched on every use, this only by alg 3 MACs */
    DES_key_schedule k1; /* DES: single-DES schedule of K1 (alg 3 chain) */
};

struct hsm {
    uint8_t lmk[HSM_LMK_PAIRS][16];
    uint8_t kb_lmk[32]; /* the AES key-block LMK (hsm_lmk_keyblock_load), kb_lmk_len 0: none */
    size_t kb_lmk_len;
    EVP_CIPHER_CTX *lmk_ctx; /* scratch: re-keyed with the variant LMK per use */
    struct hsm_key *slots;
    size_t nslots;
    int32_t *buckets;
    size_t nbuckets;            /* power of two */
    int32_t lru_head, lru_tail; /* head = most recently released */
    int32_t free_head;          /* never-used / failed slots, chained by hnext */
};

/* Ciphers fetched once from the default provider. */
struct hsm_ciphers {
    EVP_CIPHER *ede3_ecb, *ede3_cbc, *aes128_ecb, *aes192_ecb, *aes256_ecb;
    EVP_CIPHER *aes128_cbc, *aes192_cbc, *aes256_cbc;
    EVP_MAC *cmac;
};
const struct hsm_ciphers *hsm_ciphers(void);

/* Attributes of a key type. */
struct hsm_kt_info {
    const char *name;
    const char *code;
    uint8_t pair; /* index into struct hsm.lmk */
    uint8_t variant;
    bool aes_only; /* AES keys only (BDK-AES) */
    bool aes_ok;   /* DES by default, AES with scheme 'A' / hsm_key_from_clear_aes */
};
const struct hsm_kt_info *hsm_kt(enum hsm_keytype t);

/* (Re)keys k for type/clear and makes its ECB encryption schedule (allocating
 * the context on first use); the other schedules are made when first needed. */
HSM_MUST_CHECK int hsm_key_setup(struct hsm_key *k, enum hsm_keytype type, bool aes,
                                 const uint8_t *clear, size_t len);
/* Wipes clear material (contexts kept for reuse). */
void hsm_key_wipe(struct hsm_key *k);
/* Frees the contexts (after wipe). */
void hsm_key_destroy(struct hsm_key *k);
/* k->derived keyed with clear (allocated on first use), for derived session keys;
 * no schedule is made until the key is used. */
HSM_MUST_CHECK int hsm_key_derived(struct hsm_key *k, enum hsm_keytype type, bool aes,
                                   const uint8_t *clear, size_t len, struct hsm_key **out);

/* ECB over n bytes (multiple of the block) with k's schedule. */
HSM_MUST_CHECK int hsm_key_ecb(struct hsm_key *k, bool encrypt, const uint8_t *in, uint8_t *out,
                               size_t n);

/* DES natural key (8/16/24 bytes) -> 24-byte EDE3 key. */
void hsm_des_expand(const uint8_t *key, size_t len, uint8_t out[24]);

/* One-shot ECB with an arbitrary key using *ctxp as scratch (allocated on first
 * use; if ctxp is NULL a temporary context is used). DES keys 8/16/24 bytes, AES
 * keys 16/24/32. A single-length DES key runs as single DES (hsm_des1_*) and
 * leaves *ctxp untouched. */
HSM_MUST_CHECK int hsm_ecb_oneshot(EVP_CIPHER_CTX **ctxp, bool aes, const uint8_t *key,
                                   size_t keylen, bool encrypt, const uint8_t *in, uint8_t *out,
                                   size_t n);

/* Single DES, for what is single DES by definition (the ISO 9797-1 alg 3 chain,
 * single-length keys in one-shots, e.g. DUKPT's non-reversible key generation):
 * one DES operation per block, where DES-EDE3 with K||K||K would take three and
 * three key schedules. The schedule is as secret as the key: callers cleanse it. */
void hsm_des1_set_key(DES_key_schedule *ks, const uint8_t key[8]);
/* CBC-encrypts n bytes (a multiple of 8) from in to out (may be the same
 * buffer), chaining from iv and leaving the last ciphertext block in iv. */
void hsm_des1_cbc_encrypt(DES_key_schedule *ks, const uint8_t *in, uint8_t *out, size_t n,
                          uint8_t iv[8]);
/* ECB over n bytes (a multiple of 8); in and out may be the same buffer. */
void hsm_des1_ecb(DES_key_schedule *ks, bool encrypt, const uint8_t *in, uint8_t *out, size_t n);

/* Key-block LMK (keyblock.c). hsm_kb_lmk_unwrap: the key written as 'S' + a version D block
 * (text, len) under the key-block LMK, as a key of type: its clear value (*n bytes, *aes), and
 * its attributes; HSM_ERR_KEY_SCHEME without a key-block LMK, HSM_ERR_SRC_PARITY when the block
 * does not authenticate (a corrupt key under the LMK, as a parity error is under the variant
 * LMK), HSM_ERR_KEY_TYPE_CODE when its usage does not fit type. hsm_kb_lmk_wrap: k as 'S' +
 * version D block under the key-block LMK with k's attributes (the type's defaults if none). */
HSM_MUST_CHECK int hsm_kb_lmk_unwrap(struct hsm *h, enum hsm_keytype type, const char *text,
                                     size_t len, uint8_t clear[32], size_t *n, bool *aes,
                                     struct hsm_kb_attrs *a);
HSM_MUST_CHECK int hsm_kb_lmk_wrap(struct hsm *h, const struct hsm_key *k, char *out, size_t cap);
/* Narrows a: mode (0 = keep) only to mode_within (C -> G/V, B -> E/D, N -> any), kvn (NULL =
 * keep; 2 characters), exportability (0 = keep) only E -> S -> N. HSM_ERR_NOT_PERMITTED for a
 * widening, HSM_ERR_INPUT for a value that is not one. */
HSM_MUST_CHECK int hsm_kb_narrow(struct hsm_kb_attrs *a, char mode, const char *kvn,
                                 char exportability);
/* The default attributes of a key of type (aes: an AES key). */
void hsm_kb_defaults(enum hsm_keytype type, bool aes, size_t len, struct hsm_kb_attrs *a);

/* MAC internals usable with a derived key (no type check). */
HSM_MUST_CHECK int hsm_mac_compute(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                                   const uint8_t *data, size_t len, uint8_t mac[16],
                                   size_t *maclen);

/* PIN helpers shared by pin.c and dukpt.c. */
HSM_MUST_CHECK int hsm_pin_decrypt_any(struct hsm_key *key, enum hsm_pinfmt f, const uint8_t *blk,
                                       size_t len, const char *pan, char pin[13]);
HSM_MUST_CHECK int hsm_pin_encrypt_any(struct hsm_key *key, enum hsm_pinfmt f, const char *pin,
                                       const char *pan, uint8_t out[16], size_t *outlen);
/* hsm_pin_translate without the source key-type check (DUKPT-derived sources). */
HSM_MUST_CHECK int hsm_pin_translate_any(struct hsm_key *src, enum hsm_pinfmt src_fmt,
                                         const uint8_t *blk, size_t len, struct hsm_key *dst,
                                         enum hsm_pinfmt dst_fmt, const char *pan, int max_pin_len,
                                         uint8_t out[16], size_t *outlen, int *pin_len);
/* 12-digit account number of pan (see hsm.h), as digits + NUL. */
HSM_MUST_CHECK int hsm_pan_account12(const char *pan, char out[13]);

bool hsm_is_digits(const char *s, size_t n);
int hsm_hexval(char c);
/* Decodes n hex characters (n even; either case) into n / 2 bytes: HSM_OK, or HSM_ERR_INPUT
 * for an odd n or a character that is not hex. A string of decimal digits decodes as the
 * packed BCD of those digits, which is how PAN and PIN digits become cipher input. */
HSM_MUST_CHECK int hsm_hex_decode(const char *s, size_t n, uint8_t *out);
/* The length of pan when it is min..19 decimal digits, else 0. */
size_t hsm_pan_len(const char *pan, size_t min);

#endif
