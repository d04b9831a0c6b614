/* iso8583.h — the public face of libatlas_iso8583: message model, table-driven dialects,
 * pack/unpack, BER-TLV (DE 55), stream framing and masked describe.
 * Pure: no I/O except iso_dialect_load(), no logging, no mutable globals; thread-safe. */
#ifndef ATLAS_ISO8583_H
#define ATLAS_ISO8583_H

#include <stddef.h>
#include <stdint.h>

#define ISO_MUST_CHECK __attribute__((warn_unused_result))

/* Highest field number (tertiary bitmap). */
#define ISO_MAX_FIELD 192

/* ---------------------------------------------------------------------------------------------
 * Errors. Codes are stable; reasons name the culprit (field, offset, class of problem) and never
 * contain a field value.
 */
enum iso_errcode {
    ISO_OK = 0,
    ISO_E_ARG = -1,             /* invalid argument (field number out of range, NULL, ...) */
    ISO_E_EMPTY = -2,           /* zero-length message or frame */
    ISO_E_TRUNCATED = -3,       /* the message ends inside an element */
    ISO_E_MTI = -4,             /* MTI malformed */
    ISO_E_BITMAP = -5,          /* bitmap malformed (non-hex character) */
    ISO_E_UNDEFINED = -6,       /* bit set / value set for a field the dialect does not define */
    ISO_E_LENGTH = -7,          /* length prefix malformed (non-digit, bad BCD) */
    ISO_E_TOO_LONG = -8,        /* length above the field's maximum */
    ISO_E_FIXED_LENGTH = -9,    /* value length differs from a fixed field's length (pack) */
    ISO_E_CHARSET = -10,        /* character not allowed by the field type */
    ISO_E_BCD = -11,            /* invalid BCD digit or pad nibble */
    ISO_E_TRAILING = -12,       /* bytes left after the last field */
    ISO_E_NOSPACE = -13,        /* output buffer too small */
    ISO_E_ARENA = -14,          /* message arena too small */
    ISO_E_TLV = -15,            /* BER-TLV malformed */
    ISO_E_TLV_CAP = -16,        /* more TLV items than the caller's array holds */
    ISO_E_FRAME_TOO_LONG = -17, /* frame length above the link maximum */
    ISO_E_FRAME_HEADER = -18,   /* frame header malformed (non-digit ASCII length, short TPDU) */
    ISO_E_SPEC = -19,           /* dialect spec file malformed */
    ISO_E_IO = -20,             /* dialect spec file unreadable */
    ISO_E_NOT_FOUND = -21,      /* no such built-in dialect */
};

struct iso_err {
    int code;      /* enum iso_errcode */
    int field;     /* field number, 0 = MTI, 1 = bitmaps, -1 = not field related */
    size_t offset; /* byte offset in the frame/buffer where the failing element starts */
    char reason[96];
};

/* Static English text for a code ("truncated", ...). Never NULL. */
const char *iso_strerror(int code);

/* Short English meaning (at most 20 characters) of a DE 39 response code
 * (its first two characters are read), or NULL when Atlas does not use it. */
const char *iso_rc_text(const char *rc);

/* ---------------------------------------------------------------------------------------------
 * Dialects: one field spec per field number. Built-ins are const; iso_dialect_load() fills a
 * caller-owned struct from a spec file (see docs/iso8583.md for the format).
 */
enum iso_type {
    ISO_T_NONE = 0, /* field not defined in this dialect */
    ISO_T_N,        /* digits */
    ISO_T_A,        /* letters and space */
    ISO_T_AN,       /* letters, digits, space */
    ISO_T_ANS,      /* printable ASCII 0x20-0x7E */
    ISO_T_NS,       /* digits, space and specials */
    ISO_T_AS,       /* letters, space and specials */
    ISO_T_Z,        /* track 2/3: digits and the '=' or 'D' separator */
    ISO_T_XN,       /* 'C' or 'D' then digits (amount with sign); length counts the sign */
    ISO_T_B,        /* binary; length counts bytes */
};
enum iso_len_kind { ISO_LEN_FIXED = 0, ISO_LEN_LL, ISO_LEN_LLL, ISO_LEN_LLLL };
enum iso_enc {
    ISO_ENC_ASCII = 0,
    ISO_ENC_BCD,    /* packed decimal; numerics and length prefixes */
    ISO_ENC_BINARY, /* raw bytes (b data) or big-endian binary (length prefixes) */
    ISO_ENC_EBCDIC, /* cp037 */
    ISO_ENC_HEX,    /* b data as two upper-case hex characters per byte (ASCII) */
};
/* Pad nibble for BCD numerics with an odd number of digits. */
enum iso_pad { ISO_PAD_LEFT0 = 0, ISO_PAD_RIGHT0, ISO_PAD_RIGHTF, ISO_PAD_LEFTF };
/* How iso_describe() renders the field unless ISO_DESCRIBE_UNMASKED. */
enum iso_mask {
    ISO_MASK_NONE = 0,
    ISO_MASK_PAN,    /* first 6 + last 4 */
    ISO_MASK_TRACK2, /* PAN masked, everything after the separator replaced */
    ISO_MASK_TRACK1, /* PAN (after the format code) masked, the rest replaced */
    ISO_MASK_ALL,    /* whole value replaced */
    ISO_MASK_TLV,    /* BER-TLV: shown tag by tag, secret tags replaced, 5A/57 masked */
};

struct iso_field_spec {
    uint8_t type;     /* enum iso_type */
    uint8_t len_kind; /* enum iso_len_kind */
    uint8_t len_enc;  /* enum iso_enc: ASCII, BCD, BINARY or EBCDIC (ignored when FIXED) */
    uint8_t data_enc; /* enum iso_enc */
    uint8_t pad;      /* enum iso_pad (BCD data only) */
    uint8_t mask;     /* enum iso_mask */
    uint16_t max_len; /* fixed length or maximum, in canonical units (chars/digits; bytes for b) */
};

struct iso_dialect {
    char name[32];
    uint8_t mti_enc;    /* ASCII, BCD (2 bytes) or EBCDIC */
    uint8_t bitmap_enc; /* BINARY (8 bytes each) or HEX (16 characters each) */
    uint8_t tertiary;   /* 1: bit 65 announces a tertiary bitmap in DE 65's position */
    /* Defaults the spec-file loader applies to field lines without explicit encodings. */
    uint8_t def_len_enc, def_num_enc, def_text_enc, def_bin_enc;
    struct iso_field_spec field[ISO_MAX_FIELD + 1]; /* indexed by field number; 0, 1 unused */
};

/* The built-in dialect called name ("ascii87", "ascii87b", "bcd87", "ebcdic87"), or NULL. */
const struct iso_dialect *iso_dialect_find(const char *name);
/* NULL-terminated list of the built-in names (for help texts). */
extern const char *const iso_dialect_names[];

/* Parses a dialect spec (text, len bytes) into *out. Errors carry the line number in offset. */
ISO_MUST_CHECK int iso_dialect_parse(const char *text, size_t len, struct iso_dialect *out,
                                     struct iso_err *err);
/* Checks a dialect table the codec will trust: encodings suit each type, lengths fit their
 * prefixes, fields above 128 only with the tertiary option. iso_dialect_parse() calls it; a
 * caller that fills a struct iso_dialect by hand must call it before using the table. */
ISO_MUST_CHECK int iso_dialect_validate(const struct iso_dialect *d, struct iso_err *err);
/* Reads the spec file at path (≤ 64 KiB) and parses it. The only function that touches files. */
ISO_MUST_CHECK int iso_dialect_load(const char *path, struct iso_dialect *out, struct iso_err *err);

/* ---------------------------------------------------------------------------------------------
 * Message model. Field values are views {ptr, len} in canonical form: n/an/ans/z/x+n as ASCII
 * characters, b as raw bytes. A view points into the unpacked frame when the wire bytes are
 * already canonical (ASCII text, raw binary), else into the message's arena (BCD, EBCDIC and
 * hex-encoded b data are decoded there). Views set with iso_set() point wherever the caller says.
 * The message never owns memory: the frame, the arena and set values must outlive its use.
 */
struct iso_view {
    const uint8_t *ptr;
    uint32_t len;
};

#define ISO_MSG_SECONDARY 0x1u /* a secondary bitmap is (to be) present even if all zero */
#define ISO_MSG_TERTIARY  0x2u /* same for the tertiary bitmap */

struct iso_msg {
    char mti[4];    /* four ASCII digits */
    uint32_t flags; /* ISO_MSG_* */
    /* Presence bits, ISO order: field f is bit 63 - ((f-1) % 64) of bits[(f-1) / 64]. */
    uint64_t bits[3];
    struct iso_view f[ISO_MAX_FIELD + 1];
    uint8_t *arena; /* caller-provided scratch (may be NULL when nothing needs decoding) */
    size_t arena_cap;
    size_t arena_used;
};

/* Arena size that always suffices to unpack a frame of n bytes in any dialect. */
#define ISO_ARENA_FOR(n) (2 * (size_t)(n) + 16)

/* Empties m and attaches the arena (borrowed, not owned; may be NULL with cap 0). */
void iso_msg_init(struct iso_msg *m, uint8_t *arena, size_t arena_cap);
/* Removes every field and flag and rewinds the arena; keeps the arena. */
void iso_msg_clear(struct iso_msg *m);
/* Sets the MTI from a NUL-terminated string of exactly four ASCII digits. */
ISO_MUST_CHECK int iso_set_mti(struct iso_msg *m, const char *mti);
/* Sets field (2..192) to a view of len bytes at p: no copy, p must outlive m's use. */
ISO_MUST_CHECK int iso_set(struct iso_msg *m, int field, const void *p, size_t len);
/* Same, copying the bytes into m's arena (ISO_E_ARENA if it does not fit). */
ISO_MUST_CHECK int iso_set_copy(struct iso_msg *m, int field, const void *p, size_t len);
/* Copies a NUL-terminated string into the arena. */
ISO_MUST_CHECK int iso_set_str(struct iso_msg *m, int field, const char *s);
/* The field's bytes (not NUL-terminated) and length, or NULL if absent. */
const uint8_t *iso_get(const struct iso_msg *m, int field, size_t *len);
/* 1 if the field is present, else 0. */
int iso_has(const struct iso_msg *m, int field);
/* Removes a field (no-op if absent). */
void iso_unset(struct iso_msg *m, int field);
/* Number of the first present field above after (0 to start), or 0 when none is left. */
int iso_next(const struct iso_msg *m, int after);
/* dst = src, field views shared (they keep pointing into src's frame/arena); dst keeps its own
 * arena (rewound; it must not be src's arena). The usual way to start a response: copy, change
 * the MTI, set fields. No-op if dst == src. */
void iso_msg_copy(struct iso_msg *dst, const struct iso_msg *src);
/* As iso_msg_copy but every field's bytes are copied into dst's arena, so dst no longer depends
 * on src's frame or arena. ISO_E_ARENA if they do not fit. */
ISO_MUST_CHECK int iso_msg_copy_deep(struct iso_msg *dst, const struct iso_msg *src,
                                     struct iso_err *err);

/* Decodes frame[0..len) into out (cleared first; its arena is reused). No allocation. Every
 * field is validated against the dialect; the whole frame must be consumed. On error out is
 * left partially filled and must not be used. */
ISO_MUST_CHECK int iso_unpack(const struct iso_dialect *d, const uint8_t *frame, size_t len,
                              struct iso_msg *out, struct iso_err *err);
/* Encodes m into out[0..cap), validating every field; *outlen gets the length. Bitmaps are
 * derived from the present fields (plus ISO_MSG_SECONDARY/TERTIARY). */
ISO_MUST_CHECK int iso_pack(const struct iso_dialect *d, const struct iso_msg *m, uint8_t *out,
                            size_t cap, size_t *outlen, struct iso_err *err);

/* ---------------------------------------------------------------------------------------------
 * BER-TLV (EMV DE 55). Flat parse of one level: constructed tags (70, 77, BF0C, ...) are kept
 * as one item whose value may be parsed again by the caller. Items are views into the input.
 */
struct iso_tlv {
    uint32_t tag;    /* tag bytes big-endian: 0x9F26, 0xDF8116 */
    uint8_t tag_len; /* 1..4 bytes (0 on build = derive from tag) */
    uint8_t len_len; /* bytes of the length: 1 short form, 2..5 = 0x81..0x84 (0 on build =
                        minimal). Parsed items keep what was received so build is identical. */
    const uint8_t *value;
    size_t len;
};

/* Parses buf[0..n) into items[0..cap); *count gets the number found. ISO_E_TLV with the offset
 * on malformed input (truncated tag/length/value, indefinite or > 4-byte length, zero tag
 * byte), ISO_E_TLV_CAP when more than cap items. */
ISO_MUST_CHECK int iso_tlv_parse(const uint8_t *buf, size_t n, struct iso_tlv *items, size_t cap,
                                 size_t *count, struct iso_err *err);
/* Encodes items in order into out[0..cap). Parsed input re-builds byte-identical. */
ISO_MUST_CHECK int iso_tlv_build(const struct iso_tlv *items, size_t count, uint8_t *out,
                                 size_t cap, size_t *outlen, struct iso_err *err);
/* First item with this tag, or NULL. */
const struct iso_tlv *iso_tlv_find(const struct iso_tlv *items, size_t count, uint32_t tag);
/* 1 if the tag's first byte has the constructed bit (0x20). */
int iso_tlv_constructed(uint32_t tag);

/* ---------------------------------------------------------------------------------------------
 * Stream framing (pure; the caller owns the buffer). iso_frame_parse() needs only the header to
 * decide the total size, so an evbuffer user can evbuffer_pullup() ISO_FRAME_MAX_HEADER bytes,
 * learn fr.need, wait, then pull up fr.consume bytes and unpack in place.
 */
enum iso_frame_kind {
    ISO_FRAME_2B = 0, /* 2-byte big-endian length of what follows (default) */
    ISO_FRAME_4A,     /* 4 ASCII digits */
    ISO_FRAME_TPDU,   /* 2-byte length of TPDU + message, then the 5-byte TPDU */
    ISO_FRAME_NONE,   /* no header: the whole buffer is one message (tools only) */
};
#define ISO_FRAME_MAX_HEADER  7
#define ISO_FRAME_DEFAULT_MAX 8192
#define ISO_TPDU_LEN          5

enum { ISO_FRAME_NEED_MORE = 0, ISO_FRAME_READY = 1 };

struct iso_frame {
    size_t msg_off;  /* message offset in buf */
    size_t msg_len;  /* message length */
    size_t consume;  /* bytes this frame occupies (header + body) */
    size_t need;     /* NEED_MORE: total bytes needed before calling again (header, then frame) */
    size_t tpdu_off; /* TPDU offset in buf (ISO_FRAME_TPDU only) */
};

/* Looks at buf[0..avail). Returns ISO_FRAME_READY with fr filled, ISO_FRAME_NEED_MORE with
 * fr->need, or a negative error: ISO_E_FRAME_TOO_LONG (length > max_len, decided from the header
 * alone), ISO_E_EMPTY (zero-length message), ISO_E_FRAME_HEADER. max_len bounds the length
 * field's value (what follows the length); 0 means ISO_FRAME_DEFAULT_MAX. */
ISO_MUST_CHECK int iso_frame_parse(enum iso_frame_kind kind, size_t max_len, const uint8_t *buf,
                                   size_t avail, struct iso_frame *fr, struct iso_err *err);
/* Header size of a kind (0, 2, 4 or 7). */
size_t iso_frame_header_len(enum iso_frame_kind kind);
/* Writes the header for a message of msg_len bytes into out (iso_frame_header_len(kind) bytes;
 * tpdu = 5 bytes for ISO_FRAME_TPDU, else ignored). */
ISO_MUST_CHECK int iso_frame_header(enum iso_frame_kind kind, size_t max_len, size_t msg_len,
                                    const uint8_t *tpdu, uint8_t *out, size_t cap,
                                    struct iso_err *err);
/* Swaps the TPDU destination (bytes 1-2) and source (bytes 3-4) addresses in place. */
void iso_tpdu_swap(uint8_t tpdu[ISO_TPDU_LEN]);
/* "2b", "4a", "tpdu", "none" → kind. */
ISO_MUST_CHECK int iso_frame_kind_parse(const char *name, enum iso_frame_kind *out);

/* ---------------------------------------------------------------------------------------------
 * Describe: human text (one field per line) or JSON ({"mti":..,"fields":{..},"tlv":{..}}),
 * masked per the dialect's field masks unless ISO_DESCRIBE_UNMASKED (test tools only).
 */
#define ISO_DESCRIBE_JSON     0x1u
#define ISO_DESCRIBE_UNMASKED 0x2u

/* Writes a NUL-terminated rendering into out[0..cap). Returns its length, or ISO_E_NOSPACE
 * (out then holds a truncated, still NUL-terminated text) / ISO_E_ARG. */
int iso_describe(const struct iso_dialect *d, const struct iso_msg *m, unsigned flags, char *out,
                 size_t cap);

#endif
