/* DE 90, original data elements: the one place that knows its 42 digits' layout (original MTI,
 * STAN, DE 7, acquiring and forwarding institutions), so that the switch's reversals, the
 * acquirer simulator's, and the issuer and switch reading them agree by construction. */
#include "isonet.h"

#include <string.h>

/* The parts in wire order, as offsets into struct isonet_de90 with their lengths. */
static const struct {
    size_t off, len;
} parts[] = {
    { offsetof(struct isonet_de90, mti), 4 },        /* original MTI */
    { offsetof(struct isonet_de90, stan), 6 },       /* original DE 11 */
    { offsetof(struct isonet_de90, de7), 10 },       /* original DE 7 */
    { offsetof(struct isonet_de90, acquirer), 11 },  /* original DE 32 */
    { offsetof(struct isonet_de90, forwarder), 11 }, /* original DE 33 */
};
#define N_PARTS (sizeof parts / sizeof parts[0])

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int isonet_de90_pack(const struct isonet_de90 *o, char out[ISONET_DE90_LEN + 1])
{
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_PARTS; i++) {
        const char *s = (const char *)o + parts[i].off;
        if (strnlen(s, parts[i].len + 1) != parts[i].len || !digits(s, parts[i].len)) {
            out[0] = '\0';
            return -1;
        }
        memcpy(out + pos, s, parts[i].len);
        pos += parts[i].len;
    }
    out[pos] = '\0';
    return 0;
}

int isonet_de90_parse(const uint8_t *p, size_t len, struct isonet_de90 *o)
{
    if (!p || len != ISONET_DE90_LEN || !digits((const char *)p, len))
        return -1;
    size_t pos = 0;
    for (size_t i = 0; i < N_PARTS; i++) {
        char *s = (char *)o + parts[i].off;
        memcpy(s, p + pos, parts[i].len);
        s[parts[i].len] = '\0';
        pos += parts[i].len;
    }
    return 0;
}

void isonet_de90_set_acquirer(struct isonet_de90 *o, const char *id)
{
    size_t n = id ? strnlen(id, 12) : 0;
    memset(o->acquirer, '0', 11);
    o->acquirer[11] = '\0';
    if (n >= 1 && n <= 11 && digits(id, n))
        memcpy(o->acquirer + 11 - n, id, n);
}

/* Copies s into dst[cap]; a longer s (or none) leaves dst empty, which does not pack. */
static void part(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap) : cap;
    if (n >= cap)
        n = 0;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

void isonet_de90_make(struct isonet_de90 *o, const char *mti, const char *stan, const char *de7,
                      const char *acquirer_id)
{
    part(o->mti, sizeof o->mti, mti);
    part(o->stan, sizeof o->stan, stan);
    part(o->de7, sizeof o->de7, de7);
    isonet_de90_set_acquirer(o, acquirer_id);
    memset(o->forwarder, '0', 11);
    o->forwarder[11] = '\0';
}

int isonet_de90_get(const struct iso_msg *m, struct isonet_de90 *o)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, 90, &n);
    if (!p)
        return 0;
    return isonet_de90_parse(p, n, o) == 0 ? 1 : -1;
}

int isonet_de90_set(struct iso_msg *m, const struct isonet_de90 *o)
{
    char v[ISONET_DE90_LEN + 1];
    if (isonet_de90_pack(o, v) != 0)
        return -1;
    return iso_set_copy(m, 90, v, ISONET_DE90_LEN);
}
