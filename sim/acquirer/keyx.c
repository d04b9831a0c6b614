/* The terminal side of a key download (docs/keys.md): the 0810's DE 48 brings a new TPK (TPK
 * terminals) and TAK under the terminal's TMK with their KCVs; they are unwrapped in clear (a
 * terminal holds its keys in clear, as its PIN pad would in its secure memory), checked against
 * their KCVs, and become the terminal's keys. With a state directory they are kept in
 * <dir>/<ID>.keys as received — under the TMK — for the next process. */
#include "acquirer.h"

#include "hex.h"
#include "hsm.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* DE 48 elements: tag 2N ‖ length 2N ‖ value; 01 TPK, 02 its KCV, 03 TAK, 04 its KCV. */
struct keys48 {
    char tpk[50], tpk_kcv[7], tak[50], tak_kcv[7];
};

static int parse48(const char *s, struct keys48 *k)
{
    size_t n = strlen(s);
    unsigned seen = 0;
    memset(k, 0, sizeof *k);
    for (size_t off = 0; off < n;) {
        if (n - off < 4)
            return -1;
        for (size_t i = 0; i < 4; i++)
            if (s[off + i] < '0' || s[off + i] > '9')
                return -1;
        unsigned tag = (unsigned)((s[off] - '0') * 10 + (s[off + 1] - '0'));
        size_t len = (size_t)((s[off + 2] - '0') * 10 + (s[off + 3] - '0'));
        off += 4;
        if (tag < 1 || tag > 4 || len > n - off || (seen & (1u << tag)))
            return -1;
        seen |= 1u << tag;
        char *dst = tag == 1 ? k->tpk : tag == 2 ? k->tpk_kcv : tag == 3 ? k->tak : k->tak_kcv;
        size_t cap = tag % 2 ? sizeof k->tpk : sizeof k->tpk_kcv;
        if (len >= cap || (tag % 2 == 0 && len != 6))
            return -1;
        memcpy(dst, s + off, len);
        dst[len] = '\0';
        off += len;
    }
    /* the TAK always; the TPK with its KCV, or neither */
    return (seen & 0x18) == 0x18 && ((seen & 0x06) == 0x06 || (seen & 0x06) == 0) ? 0 : -1;
}

/* key (text under the TMK) unwrapped into *out, its KCV compared with kcv. 0 or -1. */
static int unwrap(struct hsm_key *tmk, enum hsm_keytype type, const char *key, const char *kcv,
                  struct hsm_key **out)
{
    uint8_t v[8];
    char hex[17];
    if (hsm_key_unwrap(tmk, type, key, strlen(key), out) != HSM_OK)
        return -1;
    hsm_key_kcv(*out, v);
    at_hex_encode(v, 3, hex);
    if (CRYPTO_memcmp(hex, kcv, 6) != 0) {
        hsm_key_release(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* Takes the keys of de48 into t (both checked first). 0 or -1 with err. */
static int take(struct sim_term *t, const char *de48, char *err, size_t errcap)
{
    struct keys48 k;
    struct hsm_key *tpk = NULL, *tak = NULL;
    if (!t->tmk) {
        snprintf(err, errcap, "terminal %s has no TMK (tmk in its profile)", t->id);
        return -1;
    }
    if (parse48(de48, &k) != 0) {
        snprintf(err, errcap, "key download: DE 48 malformed");
        return -1;
    }
    if ((k.tpk[0] && unwrap(t->tmk, HSM_KT_TPK, k.tpk, k.tpk_kcv, &tpk) != 0) ||
        unwrap(t->tmk, HSM_KT_TAK, k.tak, k.tak_kcv, &tak) != 0) {
        hsm_key_release(tpk);
        snprintf(err, errcap, "key download: a key does not unwrap under the TMK to its KCV");
        return -1;
    }
    if (tpk) {
        hsm_key_release(t->tpk);
        t->tpk = tpk;
    }
    hsm_key_release(t->tak);
    t->tak = tak;
    return 0;
}

int sim_term_apply_keys(struct sim_term *t, const char *de48, char *err, size_t errcap)
{
    if (take(t, de48, err, errcap) != 0)
        return -1;
    if (!t->state_dir[0])
        return 0;
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s.keys", t->state_dir, t->id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(de48);
    bool ok =
        fd != -1 && write(fd, de48, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    if (fd != -1)
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errcap, "%s: %s (the keys are in force in this process only)", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

int sim_term_load_keys(struct sim_term *t, const char *dir, char *err, size_t errcap)
{
    char path[512], buf[256];
    snprintf(path, sizeof path, "%s/%s.keys", dir, t->id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return errno == ENOENT ? 0 : (snprintf(err, errcap, "%s: %s", path, strerror(errno)), -1);
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) {
        snprintf(err, errcap, "%s: unreadable", path);
        return -1;
    }
    buf[got] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char why[160];
    if (take(t, buf, why, sizeof why) != 0) {
        snprintf(err, errcap, "%s: %s", path, why);
        return -1;
    }
    return 0;
}
