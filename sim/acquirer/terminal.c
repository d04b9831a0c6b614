/* Terminal profiles: the built-in demo terminals, the terminal file loader, the clear
 * lab keys (held in libhsm key objects, wiped on free) and the STAN / DUKPT counters,
 * reserved in blocks from a locked state file so that no value is ever used twice. */
#include "acquirer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "hex.h"
#include "hsm.h"
#include "parse.h"

#define STAN_MAX    999999u
#define TDES_CTR_MX 0x1FFFFFu

/* ------------------------------------------------------------------ profile fields */

static struct sim_term *term_new(const char *id)
{
    struct sim_term *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->merchant, sizeof t->merchant, "ATLASDEMO%-6.6s", id + (strlen(id) > 6 ? 4 : 0));
    snprintf(t->acquirer_id, sizeof t->acquirer_id, "%s", SIM_ACQUIRER_ID);
    snprintf(t->address, sizeof t->address, "127.0.0.1:8583");
    snprintf(t->currency, sizeof t->currency, "504");
    t->dialect = iso_dialect_find("ascii87");
    t->framing = ISO_FRAME_2B;
    t->scheme = SIM_KS_TPK;
    t->stan_next = 1;
    t->ksn_next = 1;
    return t;
}

static void term_free(struct sim_term *t)
{
    if (!t)
        return;
    hsm_key_release(t->tak);
    hsm_key_release(t->tpk);
    hsm_key_release(t->tmk);
    OPENSSL_cleanse(t->bdk, sizeof t->bdk);
    free(t);
}

/* Decodes a clear key given as hex into a libhsm key of type (NULL out = keep bytes
 * in raw instead). The clear bytes on the stack are wiped. */
static int set_key(const char *value, enum hsm_keytype type, struct hsm_key **out, uint8_t *raw,
                   size_t rawlen, const char *key, char *err, size_t errcap)
{
    uint8_t clear[32];
    size_t n = strlen(value);
    int got = at_hex_decode(value, n, clear, sizeof clear);
    if (got != 16 || (raw && (size_t)got != rawlen)) {
        snprintf(err, errcap, "%s: expected 32 hex characters (double-length key)", key);
        OPENSSL_cleanse(clear, sizeof clear);
        return -1;
    }
    int rc = 0;
    if (raw) {
        memcpy(raw, clear, rawlen);
    } else {
        hsm_key_release(*out);
        *out = NULL;
        if (hsm_key_from_clear(type, clear, 16, out) != HSM_OK) {
            snprintf(err, errcap, "%s: key setup failed", key);
            rc = -1;
        }
    }
    OPENSSL_cleanse(clear, sizeof clear);
    return rc;
}

/* Applies one "key = value" of a terminal profile. */
static int term_set(struct sim_term *t, const char *key, const char *value, char *err,
                    size_t errcap)
{
    if (strcmp(key, "address") == 0) {
        struct sockaddr_storage ss;
        socklen_t sl;
        const char *why = NULL;
        if (!at_parse_hostport(value, &ss, &sl, &why)) {
            snprintf(err, errcap, "address: %s", why ? why : "not HOST:PORT");
            return -1;
        }
        snprintf(t->address, sizeof t->address, "%s", value);
    } else if (strcmp(key, "dialect") == 0) {
        const struct iso_dialect *d = iso_dialect_find(value);
        if (!d) {
            snprintf(err, errcap, "dialect: unknown (ascii87, ascii87b, bcd87, ebcdic87)");
            return -1;
        }
        t->dialect = d;
    } else if (strcmp(key, "framing") == 0) {
        enum iso_frame_kind k;
        if (iso_frame_kind_parse(value, &k) != 0 || k == ISO_FRAME_NONE) {
            snprintf(err, errcap, "framing: expected 2b, 4a or tpdu");
            return -1;
        }
        t->framing = k;
    } else if (strcmp(key, "tpdu") == 0) {
        if (strlen(value) != 10 || at_hex_decode(value, 10, t->tpdu, sizeof t->tpdu) != 5) {
            snprintf(err, errcap, "tpdu: expected 10 hex characters");
            return -1;
        }
    } else if (strcmp(key, "key_scheme") == 0) {
        if (strcmp(value, "tpk") == 0)
            t->scheme = SIM_KS_TPK;
        else if (strcmp(value, "dukpt-tdes") == 0)
            t->scheme = SIM_KS_DUKPT_TDES;
        else if (strcmp(value, "dukpt-aes") == 0)
            t->scheme = SIM_KS_DUKPT_AES;
        else {
            snprintf(err, errcap, "key_scheme: expected tpk, dukpt-tdes or dukpt-aes");
            return -1;
        }
    } else if (strcmp(key, "tpk") == 0) {
        return set_key(value, HSM_KT_TPK, &t->tpk, NULL, 0, key, err, errcap);
    } else if (strcmp(key, "tak") == 0) {
        return set_key(value, HSM_KT_TAK, &t->tak, NULL, 0, key, err, errcap);
    } else if (strcmp(key, "tmk") == 0) {
        return set_key(value, HSM_KT_TMK, &t->tmk, NULL, 0, key, err, errcap);
    } else if (strcmp(key, "bdk") == 0) {
        return set_key(value, HSM_KT_BDK, NULL, t->bdk, 16, key, err, errcap);
    } else if (strcmp(key, "ksn") == 0) {
        /* TDES: 20 hex (counter bits must be zero); AES: 16 hex initial key id. */
        size_t n = strlen(value);
        memset(t->ksn0, 0, sizeof t->ksn0);
        if (n == 20 && at_hex_decode(value, n, t->ksn0, 10) == 10) {
            if ((t->ksn0[7] & 0x1F) || t->ksn0[8] || t->ksn0[9]) {
                snprintf(err, errcap, "ksn: the initial KSN must have a zero counter");
                return -1;
            }
        } else if (n == 16 && at_hex_decode(value, n, t->ksn0, 8) == 8) {
            /* AES initial key id; counter bytes 8..11 stay zero */
        } else {
            snprintf(err, errcap,
                     "ksn: expected 20 hex (TDES initial KSN) or 16 hex (AES initial key id)");
            return -1;
        }
    } else if (strcmp(key, "merchant") == 0) {
        if (strlen(value) == 0 || strlen(value) > 15) {
            snprintf(err, errcap, "merchant: 1 to 15 characters");
            return -1;
        }
        snprintf(t->merchant, sizeof t->merchant, "%-15s", value);
    } else if (strcmp(key, "currency") == 0) {
        const struct at_currency *c = at_currency_find(value);
        if (!c) {
            snprintf(err, errcap, "currency: unknown code");
            return -1;
        }
        memcpy(t->currency, c->numeric, 4);
    } else if (strcmp(key, "acquirer_id") == 0) {
        uint64_t v;
        if (strlen(value) > 11 || !at_parse_u64(value, 99999999999ull, &v)) {
            snprintf(err, errcap, "acquirer_id: 1 to 11 digits");
            return -1;
        }
        snprintf(t->acquirer_id, sizeof t->acquirer_id, "%s", value);
    } else {
        snprintf(err, errcap, "unknown key '%.40s'", key);
        return -1;
    }
    return 0;
}

/* Checks a finished profile has the keys its scheme needs. */
static int term_finish(struct sim_term *t, char *err, size_t errcap)
{
    static const uint8_t zero[16];
    if (strlen(t->id) != 8) {
        snprintf(err, errcap, "terminal id must be 8 characters");
        return -1;
    }
    if (!t->tak) {
        snprintf(err, errcap, "terminal %s: tak missing", t->id);
        return -1;
    }
    if (t->scheme == SIM_KS_TPK && !t->tpk) {
        snprintf(err, errcap, "terminal %s: tpk missing", t->id);
        return -1;
    }
    if (t->scheme != SIM_KS_TPK && CRYPTO_memcmp(t->bdk, zero, 16) == 0) {
        snprintf(err, errcap, "terminal %s: bdk missing", t->id);
        return -1;
    }
    if (t->framing == ISO_FRAME_TPDU && t->tpdu[0] == 0) {
        snprintf(err, errcap, "terminal %s: tpdu framing needs tpdu = 10 hex", t->id);
        return -1;
    }
    return 0;
}

static int set_put(struct sim_terms *set, struct sim_term *t, char *err, size_t errcap)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->t[i]->id, t->id) == 0) {
            term_free(set->t[i]);
            set->t[i] = t;
            return 0;
        }
    if (set->n == SIM_TERMS_MAX) {
        snprintf(err, errcap, "more than %d terminals", SIM_TERMS_MAX);
        term_free(t);
        return -1;
    }
    set->t[set->n++] = t;
    return 0;
}

/* ------------------------------------------------------------------ built-in demo terminals */

/* The lab keys of the README's demo world: clear, for labs and tests only. */
/* tmk: the terminal master key a key download's keys come wrapped under (docs/keys.md;
 * db/seed/demo_switch.sql holds the same under the LMK). */
static const char *const builtin[][2 * 10 + 1] = {
    { "TERM0001", "key_scheme", "tpk", "tpk", "0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F", "tak",
      "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C", "tmk", "1A1A1A1A1A1A1A1A2C2C2C2C2C2C2C2C", NULL },
    { "TERM0002", "key_scheme", "dukpt-tdes", "bdk", "0123456789ABCDEFFEDCBA9876543210", "ksn",
      "FFFF9876543210E00000", "tak", "5E5E5E5E5E5E5E5E6D6D6D6D6D6D6D6D", "tmk",
      "4A4A4A4A4A4A4A4A5B5B5B5B5B5B5B5B", NULL },
    { "TERM0003", "key_scheme", "dukpt-aes", "bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "ksn",
      "1234567890123456", "tak", "7A7A7A7A7A7A7A7A8F8F8F8F8F8F8F8F", "tmk",
      "6B6B6B6B6B6B6B6B7C7C7C7C7C7C7C7C", NULL },
    { "TERM0004", "key_scheme", "tpk", "tpk", "0B0B0B0B0B0B0B0B1A1A1A1A1A1A1A1A", "tak",
      "2C2C2C2C2C2C2C2C3B3B3B3B3B3B3B3B", "tmk", "8C8C8C8C8C8C8C8C9D9D9D9D9D9D9D9D", "address",
      "127.0.0.1:8584", "dialect", "bcd87", "framing", "tpdu", "tpdu", "6000010000", NULL },
};

struct sim_term *sim_term_create(const char *id, const char *const kv[], char *err, size_t errcap)
{
    if (strlen(id) != 8) {
        snprintf(err, errcap, "terminal id must be 8 characters (DE 41)");
        return NULL;
    }
    struct sim_term *t = term_new(id);
    if (!t) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    for (size_t k = 0; kv && kv[k]; k += 2) {
        if (!kv[k + 1]) {
            snprintf(err, errcap, "%.40s: value missing", kv[k]);
            term_free(t);
            return NULL;
        }
        if (term_set(t, kv[k], kv[k + 1], err, errcap) != 0) {
            term_free(t);
            return NULL;
        }
    }
    if (term_finish(t, err, errcap) != 0) {
        term_free(t);
        return NULL;
    }
    return t;
}

void sim_term_free(struct sim_term *t)
{
    term_free(t);
}

int sim_terms_builtin(struct sim_terms *set, char *err, size_t errcap)
{
    memset(set, 0, sizeof *set);
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        struct sim_term *t = sim_term_create(builtin[i][0], &builtin[i][1], err, errcap);
        if (!t || set_put(set, t, err, errcap) != 0) {
            sim_terms_free(set);
            return -1;
        }
    }
    return 0;
}

struct load_ctx {
    struct sim_terms *set;
    struct sim_term *cur;
    char section_name[64];
};

static int load_flush(struct load_ctx *c, char *err, size_t errcap)
{
    if (!c->cur)
        return 0;
    struct sim_term *t = c->cur;
    c->cur = NULL;
    if (term_finish(t, err, errcap) != 0) {
        term_free(t);
        return -1;
    }
    return set_put(c->set, t, err, errcap);
}

static int load_cb(void *ctx, const char *section, const char *name, const char *key,
                   const char *value, char *err, size_t errcap)
{
    struct load_ctx *c = ctx;
    if (strcmp(section, "terminal") != 0) {
        snprintf(err, errcap, "keys belong in a [terminal ID] section");
        return -1;
    }
    if (!c->cur || strcmp(c->section_name, name) != 0) {
        if (load_flush(c, err, errcap) != 0)
            return -1;
        if (strlen(name) != 8) {
            snprintf(err, errcap, "terminal id must be 8 characters (DE 41)");
            return -1;
        }
        c->cur = term_new(name);
        if (!c->cur) {
            snprintf(err, errcap, "out of memory");
            return -1;
        }
        snprintf(c->section_name, sizeof c->section_name, "%s", name);
    }
    return term_set(c->cur, key, value, err, errcap);
}

int sim_terms_load(struct sim_terms *set, const char *path, char *err, size_t errcap)
{
    struct load_ctx c = { .set = set };
    if (at_conf_load(path, load_cb, &c, err, errcap) != 0) {
        term_free(c.cur);
        return -1;
    }
    char why[200];
    if (load_flush(&c, why, sizeof why) != 0) {
        snprintf(err, errcap, "%s: %s", path, why);
        return -1;
    }
    return 0;
}

struct sim_term *sim_terms_find(const struct sim_terms *set, const char *id)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->t[i]->id, id) == 0)
            return set->t[i];
    return NULL;
}

void sim_terms_free(struct sim_terms *set)
{
    for (size_t i = 0; i < set->n; i++)
        term_free(set->t[i]);
    set->n = 0;
}

/* ------------------------------------------------------------------ counters */

/* A DUKPT device never uses a counter with too many one bits (X9.24-1: at most 10 of
 * the 21; X9.24-3: at most 16 of the 32), nor counter 0. */
static bool ksn_counter_valid(const struct sim_term *t, uint32_t c)
{
    if (c == 0)
        return false;
    if (t->scheme == SIM_KS_DUKPT_TDES)
        return c <= TDES_CTR_MX && __builtin_popcount(c) <= 10;
    return __builtin_popcount(c) <= 16;
}

/* The highest counter a device may use: 21 bits for TDES; for AES the largest 32-bit
 * value with at most 16 one-bits, so counting never wraps through 0. */
static uint32_t ksn_counter_max(const struct sim_term *t)
{
    return t->scheme == SIM_KS_DUKPT_TDES ? TDES_CTR_MX : 0xFFFF0000u;
}

void sim_term_set_counters(struct sim_term *t, uint32_t stan_next, uint32_t ksn_next)
{
    t->stan_next = stan_next == 0 || stan_next > STAN_MAX ? 1 : stan_next;
    t->ksn_next = ksn_next;
    t->reserved = false;
}

static int mkdirs(const char *dir)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

/* Parses "stan=N\nksn_counter=N\n" (comments allowed). */
static int parse_state(const char *buf, uint32_t *stan, uint32_t *ksn)
{
    const char *p = buf;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > 0 && p[0] != '#') {
            uint64_t v;
            if (n > 5 && strncmp(p, "stan=", 5) == 0 && at_parse_u64n(p + 5, n - 5, STAN_MAX, &v))
                *stan = (uint32_t)v;
            else if (n > 12 && strncmp(p, "ksn_counter=", 12) == 0 &&
                     at_parse_u64n(p + 12, n - 12, 0xFFFFFFFFull, &v))
                *ksn = (uint32_t)v;
            else
                return -1;
        }
        p += n + (eol ? 1 : 0);
    }
    return 0;
}

int sim_term_reserve(struct sim_term *t, const char *dir, uint32_t n, char *err, size_t errcap)
{
    char path[512];
    if (n == 0)
        n = 1;
    if (dir != t->state_dir)
        snprintf(t->state_dir, sizeof t->state_dir, "%s", dir);
    if (mkdirs(dir) != 0) {
        snprintf(err, errcap, "state directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (sim_term_load_keys(t, dir, err, errcap) != 0) /* keys downloaded earlier (keyx.c) */
        return -1;
    snprintf(path, sizeof path, "%s/%s.state", dir, t->id);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd == -1) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX) == -1) {
        snprintf(err, errcap, "%s: lock: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    char buf[512];
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    if (got < 0) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    buf[got] = '\0';
    uint32_t stan = 1, ksn = 1;
    if (parse_state(buf, &stan, &ksn) != 0) {
        /* Never guess: resetting would reuse KSNs. */
        snprintf(err, errcap, "%s: unreadable state (fix or remove it knowingly)", path);
        close(fd);
        return -1;
    }
    if (stan == 0)
        stan = 1;
    /* KSN block: n valid counters from ksn. */
    uint32_t kend = ksn;
    if (t->scheme != SIM_KS_TPK) {
        uint32_t found = 0;
        uint64_t c = ksn;
        while (found < n && c <= ksn_counter_max(t)) {
            if (ksn_counter_valid(t, (uint32_t)c))
                found++;
            c++;
        }
        if (found == 0) {
            snprintf(err, errcap, "terminal %s: DUKPT counter exhausted (needs a new initial key)",
                     t->id);
            close(fd);
            return -1;
        }
        kend = (uint32_t)c; /* <= max + 1, which fits: max < UINT32_MAX */
    }
    uint32_t stan_after = (uint32_t)((stan - 1 + (uint64_t)n) % STAN_MAX) + 1;
    int len = snprintf(buf, sizeof buf,
                       "# acquirer-sim counters of %s: the next STAN and DUKPT counter not yet "
                       "used.\n# Never lower them: a reused KSN is a security fault.\n"
                       "stan=%u\nksn_counter=%u\n",
                       t->id, stan_after, kend);
    if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) == -1 || fsync(fd) == -1) {
        snprintf(err, errcap, "%s: write: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    t->stan_next = stan;
    t->stan_left = n;
    t->ksn_next = ksn;
    t->ksn_end = kend;
    t->reserved = true;
    return 0;
}

/* Hands out the next STAN (1..999999, wrapping). */
int sim_term_next_stan(struct sim_term *t, uint32_t *stan, char *err, size_t errcap)
{
    if (t->reserved && t->stan_left == 0 && sim_term_reserve(t, t->state_dir, 64, err, errcap))
        return -1;
    *stan = t->stan_next;
    t->stan_next = t->stan_next >= STAN_MAX ? 1 : t->stan_next + 1;
    if (t->stan_left)
        t->stan_left--;
    return 0;
}

/* Hands out the next valid DUKPT counter. */
int sim_term_next_ksn(struct sim_term *t, uint32_t *ctr, char *err, size_t errcap)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        while ((!t->reserved || t->ksn_next < t->ksn_end) && t->ksn_next <= ksn_counter_max(t) &&
               !ksn_counter_valid(t, t->ksn_next))
            t->ksn_next++;
        if (t->ksn_next > ksn_counter_max(t) || t->ksn_next == 0) {
            snprintf(err, errcap, "terminal %s: DUKPT counter exhausted", t->id);
            return -1;
        }
        if (!t->reserved || t->ksn_next < t->ksn_end) {
            *ctr = t->ksn_next++;
            return 0;
        }
        if (sim_term_reserve(t, t->state_dir, 64, err, errcap) != 0)
            return -1;
    }
    snprintf(err, errcap, "terminal %s: DUKPT counter exhausted", t->id);
    return -1;
}
