/* Loader for user-written dialect spec files (format in docs/iso8583.md): a line-oriented
 * text that starts from a built-in or from nothing, sets the dialect's encodings and defines
 * fields. The result is validated as a whole so the codec can trust every table it is given. */
#include "iso_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kw {
    const char *name;
    uint8_t value;
};

static const struct kw types[] = { { "n", ISO_T_N },       { "a", ISO_T_A },    { "an", ISO_T_AN },
                                   { "ans", ISO_T_ANS },   { "ns", ISO_T_NS },  { "as", ISO_T_AS },
                                   { "z", ISO_T_Z },       { "x+n", ISO_T_XN }, { "b", ISO_T_B },
                                   { "none", ISO_T_NONE }, { NULL, 0 } };
static const struct kw encs[] = { { "ascii", ISO_ENC_ASCII },   { "bcd", ISO_ENC_BCD },
                                  { "binary", ISO_ENC_BINARY }, { "ebcdic", ISO_ENC_EBCDIC },
                                  { "hex", ISO_ENC_HEX },       { NULL, 0 } };
static const struct kw pads[] = { { "left0", ISO_PAD_LEFT0 },
                                  { "right0", ISO_PAD_RIGHT0 },
                                  { "rightf", ISO_PAD_RIGHTF },
                                  { "leftf", ISO_PAD_LEFTF },
                                  { NULL, 0 } };
static const struct kw masks[] = { { "none", ISO_MASK_NONE },
                                   { "pan", ISO_MASK_PAN },
                                   { "track2", ISO_MASK_TRACK2 },
                                   { "track1", ISO_MASK_TRACK1 },
                                   { "all", ISO_MASK_ALL },
                                   { "tlv", ISO_MASK_TLV },
                                   { NULL, 0 } };
static const struct kw yesno[] = { { "yes", 1 }, { "no", 0 }, { NULL, 0 } };

static int lookup(const struct kw *t, const char *s, uint8_t *out)
{
    for (; t->name; t++)
        if (strcmp(t->name, s) == 0) {
            *out = t->value;
            return 0;
        }
    return -1;
}

/* Strict decimal: 1-4 digits, no sign, no trailing garbage. */
static int parse_num(const char *s, unsigned *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int is_numeric_type(uint8_t t)
{
    return t == ISO_T_N || t == ISO_T_Z || t == ISO_T_XN;
}

/* "field N TYPE LEN [key=value]..." (toks[0] is "field"). */
static int parse_field(struct iso_dialect *d, char **toks, int nt, size_t line, struct iso_err *err)
{
    unsigned f, len;
    uint8_t type;
    if (nt < 3 || parse_num(toks[1], &f) || f < 2 || f > ISO_MAX_FIELD)
        return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: expected 'field <2-192> <type> ...'",
                        line);
    if (lookup(types, toks[2], &type))
        return iso_fail(err, ISO_E_SPEC, (int)f, line, "line %zu: unknown type '%.16s'", line,
                        toks[2]);
    struct iso_field_spec *s = &d->field[f];
    if (type == ISO_T_NONE) {
        if (nt != 3)
            return iso_fail(err, ISO_E_SPEC, (int)f, line, "line %zu: 'none' takes no options",
                            line);
        memset(s, 0, sizeof(*s));
        return 0;
    }
    if (nt < 4)
        return iso_fail(err, ISO_E_SPEC, (int)f, line, "line %zu: missing length", line);
    const char *l = toks[3];
    uint8_t kind = ISO_LEN_FIXED;
    size_t nl = strspn(l, "L");
    if (nl == 1 || nl > 4)
        return iso_fail(err, ISO_E_SPEC, (int)f, line,
                        "line %zu: length must be N, LLN, LLLN or "
                        "LLLLN",
                        line);
    kind = nl == 0 ? ISO_LEN_FIXED : (uint8_t)(nl - 1);
    if (parse_num(l + nl, &len) || len == 0)
        return iso_fail(err, ISO_E_SPEC, (int)f, line, "line %zu: bad length '%.16s'", line, l);
    uint8_t old_mask = s->mask;
    s->type = type;
    s->len_kind = kind;
    s->max_len = (uint16_t)len;
    s->len_enc = kind == ISO_LEN_FIXED ? ISO_ENC_ASCII : d->def_len_enc;
    s->data_enc = type == ISO_T_B         ? d->def_bin_enc
                  : is_numeric_type(type) ? d->def_num_enc
                                          : d->def_text_enc;
    s->pad = kind == ISO_LEN_FIXED ? ISO_PAD_LEFT0 : ISO_PAD_RIGHT0;
    s->mask = old_mask;
    for (int i = 4; i < nt; i++) {
        char *eq = strchr(toks[i], '=');
        int bad = 1;
        if (eq) {
            *eq = '\0';
            const char *k = toks[i], *v = eq + 1;
            if (strcmp(k, "lenc") == 0)
                bad = lookup(encs, v, &s->len_enc);
            else if (strcmp(k, "enc") == 0)
                bad = lookup(encs, v, &s->data_enc);
            else if (strcmp(k, "pad") == 0)
                bad = lookup(pads, v, &s->pad);
            else if (strcmp(k, "mask") == 0)
                bad = lookup(masks, v, &s->mask);
        }
        if (bad)
            return iso_fail(err, ISO_E_SPEC, (int)f, line, "line %zu: bad option '%.24s'", line,
                            toks[i]);
    }
    return 0;
}

/* Whole-table checks: every combination the codec relies on. */
int iso_dialect_validate(const struct iso_dialect *d, struct iso_err *err)
{
    if (!d)
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL dialect");
    if (d->mti_enc != ISO_ENC_ASCII && d->mti_enc != ISO_ENC_BCD && d->mti_enc != ISO_ENC_EBCDIC)
        return iso_fail(err, ISO_E_SPEC, 0, 0, "mti must be ascii, bcd or ebcdic");
    if (d->bitmap_enc != ISO_ENC_HEX && d->bitmap_enc != ISO_ENC_BINARY)
        return iso_fail(err, ISO_E_SPEC, 1, 0, "bitmap must be hex or binary");
    if (d->tertiary > 1)
        return iso_fail(err, ISO_E_SPEC, 1, 0, "tertiary must be 0 or 1");
    for (int f = 2; f <= ISO_MAX_FIELD; f++) {
        const struct iso_field_spec *s = &d->field[f];
        if (s->type == ISO_T_NONE || (f == 65 && d->tertiary))
            continue;
        if (s->type > ISO_T_B)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: unknown type", f);
        if (f > 128 && !d->tertiary)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d needs 'tertiary yes'", f);
        int ok_enc = s->type == ISO_T_B
                         ? (s->data_enc == ISO_ENC_BINARY || s->data_enc == ISO_ENC_HEX)
                     : is_numeric_type(s->type)
                         ? (s->data_enc == ISO_ENC_ASCII || s->data_enc == ISO_ENC_BCD ||
                            s->data_enc == ISO_ENC_EBCDIC)
                         : (s->data_enc == ISO_ENC_ASCII || s->data_enc == ISO_ENC_EBCDIC);
        if (!ok_enc)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: encoding does not suit its type", f);
        if (s->len_kind > ISO_LEN_LLLL || s->max_len == 0 || s->max_len > 9999 ||
            s->pad > ISO_PAD_LEFTF || s->mask > ISO_MASK_TLV)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: bad length kind, length or option",
                            f);
        if (s->mask == ISO_MASK_TLV && s->type != ISO_T_B)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: mask tlv needs type b", f);
        if (s->type == ISO_T_XN && s->max_len < 2)
            return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: x+n needs a length of at least 2", f);
        if (s->len_kind != ISO_LEN_FIXED) {
            unsigned limit;
            switch (s->len_enc) {
            case ISO_ENC_ASCII:
            case ISO_ENC_EBCDIC:
            case ISO_ENC_BCD:
                limit = s->len_kind == ISO_LEN_LL ? 99 : s->len_kind == ISO_LEN_LLL ? 999 : 9999;
                break;
            case ISO_ENC_BINARY:
                limit = s->len_kind == ISO_LEN_LL ? 255 : 9999;
                break;
            default:
                return iso_fail(err, ISO_E_SPEC, f, 0, "field %d: bad length encoding", f);
            }
            if (s->max_len > limit)
                return iso_fail(err, ISO_E_SPEC, f, 0,
                                "field %d: maximum %u does not fit the length prefix", f,
                                (unsigned)s->max_len);
        }
    }
    return 0;
}

int iso_dialect_parse(const char *text, size_t len, struct iso_dialect *d, struct iso_err *err)
{
    if (!text || !d)
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL spec text or dialect");
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "custom");
    d->def_bin_enc = ISO_ENC_BINARY;
    d->bitmap_enc = ISO_ENC_BINARY;
    size_t pos = 0, line = 0;
    int seen_directive = 0;
    while (pos < len) {
        char buf[256];
        size_t e = pos;
        while (e < len && text[e] != '\n')
            e++;
        line++;
        size_t n = e - pos;
        if (n >= sizeof(buf))
            return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: longer than 255 characters",
                            line);
        if (memchr(text + pos, '\0', n))
            return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: NUL byte", line);
        memcpy(buf, text + pos, n);
        buf[n] = '\0';
        pos = e + 1;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *toks[16];
        int nt = 0;
        char *save = NULL;
        for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (nt == 16)
                return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: too many words", line);
            toks[nt++] = t;
        }
        if (nt == 0)
            continue;
        const char *k = toks[0];
        int rc = 0;
        if (strcmp(k, "field") == 0) {
            rc = parse_field(d, toks, nt, line, err);
            seen_directive = 1;
            if (rc)
                return rc;
            continue;
        }
        if (nt != 2)
            return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: expected '<keyword> <value>'",
                            line);
        const char *v = toks[1];
        int bad = 0;
        if (strcmp(k, "base") == 0) {
            const struct iso_dialect *b = iso_dialect_find(v);
            if (!b)
                return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: unknown base dialect", line);
            if (seen_directive)
                return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: 'base' must come first",
                                line);
            char keep[sizeof(d->name)];
            memcpy(keep, d->name, sizeof(keep));
            *d = *b;
            memcpy(d->name, keep, sizeof(keep));
        } else if (strcmp(k, "name") == 0) {
            if (strlen(v) >= sizeof(d->name))
                return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: name too long", line);
            snprintf(d->name, sizeof(d->name), "%s", v);
        } else if (strcmp(k, "mti") == 0) {
            bad = lookup(encs, v, &d->mti_enc);
        } else if (strcmp(k, "bitmap") == 0) {
            bad = lookup(encs, v, &d->bitmap_enc);
        } else if (strcmp(k, "tertiary") == 0) {
            bad = lookup(yesno, v, &d->tertiary);
        } else if (strcmp(k, "lengths") == 0) {
            bad = lookup(encs, v, &d->def_len_enc);
        } else if (strcmp(k, "numeric") == 0) {
            bad = lookup(encs, v, &d->def_num_enc);
        } else if (strcmp(k, "text") == 0) {
            bad = lookup(encs, v, &d->def_text_enc);
        } else if (strcmp(k, "binary") == 0) {
            bad = lookup(encs, v, &d->def_bin_enc);
        } else {
            return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: unknown keyword '%.16s'", line,
                            k);
        }
        if (strcmp(k, "name") != 0)
            seen_directive = 1;
        if (bad)
            return iso_fail(err, ISO_E_SPEC, -1, line, "line %zu: bad value for '%s'", line, k);
    }
    return iso_dialect_validate(d, err);
}

int iso_dialect_load(const char *path, struct iso_dialect *out, struct iso_err *err)
{
    enum { MAX_SPEC = 64 * 1024 };
    if (!path || !out)
        return iso_fail(err, ISO_E_ARG, -1, 0, "NULL path or dialect");
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return iso_fail(err, ISO_E_IO, -1, 0, "cannot open spec file: %s", strerror(errno));
    /* Configuration time, not a hot path: one heap buffer, freed before returning. */
    char *buf = malloc(MAX_SPEC + 1);
    if (!buf) {
        fclose(fp);
        return iso_fail(err, ISO_E_IO, -1, 0, "out of memory reading spec file");
    }
    size_t n = fread(buf, 1, MAX_SPEC + 1, fp);
    int rerr = ferror(fp);
    fclose(fp);
    int rc;
    if (rerr)
        rc = iso_fail(err, ISO_E_IO, -1, 0, "read error on spec file");
    else if (n > MAX_SPEC)
        rc = iso_fail(err, ISO_E_SPEC, -1, 0, "spec file larger than 64 KiB");
    else
        rc = iso_dialect_parse(buf, n, out, err);
    free(buf);
    return rc;
}
