/* JSON string escaping (see json.h). */
#include "json.h"

#include <string.h>

size_t at_json_quote(char *out, size_t cap, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    char esc[6] = { '\\', 'u', '0', '0' };
    size_t len = 0;

#define EMIT(p, k)                                                                                 \
    do {                                                                                           \
        if (len + (k) <= cap)                                                                      \
            memcpy(out + len, (p), (k));                                                           \
        len += (k);                                                                                \
    } while (0)

    EMIT("\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            EMIT(esc, 2);
            esc[1] = 'u';
        } else if (c < 0x20 || c >= 0x7f) {
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            EMIT(esc, 6);
        } else {
            EMIT(&s[i], 1);
        }
    }
    EMIT("\"", 1);
#undef EMIT
    return len;
}

void at_json_fput(FILE *f, const char *s)
{
    char esc[8];
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        size_t k = at_json_quote(esc, sizeof esc, s, 1); /* one byte: at most 8 with its quotes */
        fwrite(esc + 1, 1, k - 2, f);
    }
    fputc('"', f);
}
