/* JSON strings: the one escaper for what Atlas writes as JSON by hand (the log, the acquirer
 * simulator's reports, /health). Tools that link libjansson let it write their JSON; the
 * iso8583 library, which may not depend on common/, escapes its own renderings (describe.c)
 * the same way. */
#ifndef ATLAS_JSON_H
#define ATLAS_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes s[0..n) as a JSON string, quotes included, into out (cap bytes): '"' and '\' are
 * backslashed, control bytes and every byte from 0x7F up become \u00XX, so untrusted bytes can
 * never break a line and the result is plain ASCII. Returns the length of the whole quoted
 * string; when it is more than cap, out holds only its beginning, cut before the first quote,
 * byte or escape that did not fit whole (as snprintf, but no NUL is ever written). */
size_t at_json_quote(char *out, size_t cap, const char *s, size_t n);

/* The NUL-terminated s as a JSON string (at_json_quote's escaping) on f; NULL writes null. */
void at_json_fput(FILE *f, const char *s);

#endif
