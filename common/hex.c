/* Hex encoding and strict decoding. */
#include "hex.h"

int at_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void at_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
    out[2 * n] = '\0';
}

int at_is_hex(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (at_hexval(s[i]) < 0)
            return 0;
    return 1;
}

int at_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 2 != 0 || len / 2 > cap || (len > 0 && !at_is_hex(in, len)))
        return -1;
    for (size_t i = 0; i < len / 2; i++)
        out[i] = (uint8_t)(at_hexval(in[2 * i]) << 4 | at_hexval(in[2 * i + 1]));
    return (int)(len / 2);
}
