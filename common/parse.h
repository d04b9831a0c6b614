/* Strict parsers: every number and address read from a config file, a
 * command line or the wire goes through one of these. They reject empty
 * input, signs, range errors and trailing garbage. */
#ifndef ATLAS_PARSE_H
#define ATLAS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Parses the len decimal digits at s into *out, refusing values above max.
 * Returns false (and leaves *out alone) on any non-digit or overflow. */
__attribute__((warn_unused_result)) bool at_parse_u64n(const char *s, size_t len, uint64_t max,
                                                       uint64_t *out);

/* Same for a NUL-terminated string. */
__attribute__((warn_unused_result)) bool at_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A decimal number, finite and not negative: digits with an optional fraction and exponent
 * ("10", "0.5", ".5", "1e3", "2.5E-1"). Empty input, signs, spaces, hexadecimal, "inf", "nan",
 * trailing garbage and values out of double's range are refused (false, *out untouched). */
__attribute__((warn_unused_result)) bool at_parse_double(const char *s, double *out);

/* True if s is min..max decimal digits and nothing else (an empty s only when min is 0). */
__attribute__((warn_unused_result)) bool at_is_digits(const char *s, size_t min, size_t max);

/* The Luhn (ISO/IEC 7812-1) check digit of the n decimal digits at s, as a character; and
 * whether the n characters at s are digits whose last one is the Luhn check digit of the rest
 * (false for n < 2 or any non-digit). */
char at_luhn_digit(const char *s, size_t n);
__attribute__((warn_unused_result)) bool at_luhn_ok(const char *s, size_t n);

/* "yes/no/true/false/on/off/1/0" → bool. */
__attribute__((warn_unused_result)) bool at_parse_bool(const char *s, bool *out);

/* Parses "HOST:PORT" (IPv4 dotted quad, "localhost", or "[v6]:port") into a
 * sockaddr. Only numeric hosts and "localhost" are accepted: a daemon never
 * blocks on DNS. Returns false with a reason in err (if non-NULL). */
__attribute__((warn_unused_result)) bool
at_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **err);

#endif
