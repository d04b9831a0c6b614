/* Private helpers shared by the iso8583 library's source files: character-class and
 * EBCDIC tables, the error filler. Not installed, not included outside iso8583/. */
#ifndef ATLAS_ISO8583_ISO_INTERNAL_H
#define ATLAS_ISO8583_ISO_INTERNAL_H

#include "iso8583.h"

/* Character classes (bits of iso_cls[]). */
#define ISO_C_DIGIT   0x01
#define ISO_C_ALPHA   0x02
#define ISO_C_SPACE   0x04
#define ISO_C_SPECIAL 0x08 /* printable, not alphanumeric, not space */
#define ISO_C_ZSEP    0x10 /* '=' and 'D': track separators */
#define ISO_C_HEX     0x20

extern const uint8_t iso_cls[256];
/* ASCII → EBCDIC cp037 for 0x00-0x7F (0 where we never emit), and back (0 = not mapped). */
extern const uint8_t iso_a2e[128];
extern const uint8_t iso_e2a[256];

/* Byte → "HH" (upper case) and hex character → nibble (0xFF if not hex). */
extern const char iso_hexpair[256][2];
extern const uint8_t iso_nibble[256];

/* The library's one hex encoder (codec.c: 16 bytes per step where SSE2 exists, for ascii87's
 * b fields): writes 2*n upper-case hex characters, no NUL. Everything above the library uses
 * common/hex.h's at_hex_encode instead; iso8583 depends on nothing of ours, so it keeps this
 * one, which is also its hot path. */
void iso_hex_encode(const uint8_t *in, size_t n, uint8_t *out);

/* Fills err (if non-NULL) and returns code. The reason must never contain a field value. */
int iso_fail(struct iso_err *err, int code, int field, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
