/* Hex encoding for keys, PIN blocks and binary fields crossing text protocols. */
#ifndef ATLAS_HEX_H
#define ATLAS_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n upper-case hex characters and a NUL to out (>= 2*n+1 bytes). */
void at_hex_encode(const uint8_t *in, size_t n, char *out);

/* Decodes exactly len hex characters (either case) into out.
 * Returns the number of bytes written, or -1 if len is odd, a character is
 * not hex, or the result would exceed cap. out is untouched on error. */
__attribute__((warn_unused_result)) int at_hex_decode(const char *in, size_t len, uint8_t *out,
                                                      size_t cap);

/* The value of one hex digit (either case), or -1. */
int at_hexval(char c);

/* True if the len characters of s are all hex digits (and len > 0). */
int at_is_hex(const char *s, size_t len);

#endif
