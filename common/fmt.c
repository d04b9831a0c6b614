/* Fixed-width decimal writers and a bounded copy (see fmt.h). */
#include "fmt.h"

#include <string.h>

void at_put_digits(char *out, unsigned width, uint64_t v)
{
    for (unsigned i = width; i-- > 0;) {
        out[i] = (char)('0' + v % 10u);
        v /= 10u;
    }
}

size_t at_put_i64(char out[AT_I64_CHARS], int64_t v)
{
    /* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    char tmp[20];
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

size_t at_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t len = strlen(src);
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return len;
}
