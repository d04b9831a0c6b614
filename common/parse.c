/* Strict number, boolean and address parsing (memcached's safe_strtoul habit). */
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool at_parse_u64n(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool at_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    return at_parse_u64n(s, strlen(s), max, out);
}

static size_t digit_run(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

/* The grammar is checked here, not left to strtod, which also takes leading spaces, signs,
 * hexadecimal and "inf"/"nan". */
bool at_parse_double(const char *s, double *out)
{
    size_t i = digit_run(s), mantissa = i;
    if (s[i] == '.') {
        size_t f = digit_run(s + i + 1);
        mantissa += f;
        i += 1 + f;
    }
    if (mantissa == 0)
        return false;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-')
            i++;
        size_t e = digit_run(s + i);
        if (e == 0)
            return false;
        i += e;
    }
    if (s[i] != '\0')
        return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool at_is_digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

char at_luhn_digit(const char *s, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(s[n - 1 - i] - '0');
        if (i % 2 == 0) { /* the digit left of the check digit is doubled */
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

bool at_luhn_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n >= 2 && at_luhn_digit(s, n - 1) == s[n - 1];
}

bool at_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "yes", "true", "on" };
    static const char *const no[] = { "0", "no", "false", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool at_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
                       const char **err)
{
    char host[64];
    const char *colon;
    const char *dummy;
    uint64_t port;

    if (!err)
        err = &dummy;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            *err = "expected [IPv6]:PORT";
            return false;
        }
        if ((size_t)(close - s - 1) >= sizeof host) {
            *err = "host too long";
            return false;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *err = "expected HOST:PORT";
            return false;
        }
        if ((size_t)(colon - s) >= sizeof host) {
            *err = "host too long";
            return false;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    if (!at_parse_u64(colon + 1, 65535, &port)) {
        *err = "port is not a number in 0..65535";
        return false;
    }
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");

    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *sslen = sizeof *sin;
        return true;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof *sin6;
        return true;
    }
    *err = "host is not a numeric IPv4/IPv6 address";
    return false;
}
