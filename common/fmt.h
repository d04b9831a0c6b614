/* Formatting without printf for the per-message path. snprintf parses its
 * format on every call (5.7 % of switchd's CPU per authorization went to
 * vfprintf in the profile of docs/BENCHMARKS.md: journal arrays, timestamps,
 * DE 7, STANs); these write the same bytes as the printf format named in
 * each comment, straight from integers. */
#ifndef ATLAS_FMT_H
#define ATLAS_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Writes the width (1..20) low-order decimal digits of v, zero-padded on the
 * left, and no NUL: the bytes of "%0<width>llu" printed with v % 10^width. */
void at_put_digits(char *out, unsigned width, uint64_t v);

/* Writes v in decimal, '-' first when negative, and a NUL — "%lld" — into
 * out (at least AT_I64_CHARS bytes). Returns the length, NUL excluded. */
#define AT_I64_CHARS 21
size_t at_put_i64(char out[AT_I64_CHARS], int64_t v);

/* Copies src into dst, cut to cap - 1 bytes, always NUL-terminated (cap > 0):
 * snprintf(dst, cap, "%s", src). Returns strlen(src), so a result >= cap
 * means src was cut. */
size_t at_strlcpy(char *dst, const char *src, size_t cap);

#endif
