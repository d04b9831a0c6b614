/* isodump: decode ISO 8583 messages to JSON (masked unless --unmasked) and encode JSON back to
 * wire bytes, in any built-in or spec-file dialect, with optional stream framing. A test and
 * operator tool built on libatlas_iso8583; JSON input is parsed with libjansson. Unlike the
 * library, the tool links common/ (its hex). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hex.h"
#include "iso8583.h"

#define MAX_INPUT  (16u * 1024 * 1024)
#define MAX_MSG    (1u << 20)
#define ARENA_SIZE (4u * 1024 * 1024)

static const char usage[] =
    "usage: isodump decode (--dialect NAME | --spec FILE) [--frame none|2b|4a|tpdu] [--hex]\n"
    "                      [--unmasked] [--text] [--max-frame N]\n"
    "       isodump encode (--dialect NAME | --spec FILE) [--frame none|2b|4a|tpdu] [--hex]\n"
    "       isodump --help\n"
    "\n"
    "decode  reads messages from stdin (raw bytes, or hex text with --hex) and prints one JSON\n"
    "        object per message and line: {\"mti\":\"0200\",\"fields\":{\"2\":\"...\",...}}.\n"
    "        Field values are canonical text; b fields are upper-case hex. Fields whose dialect\n"
    "        mask is tlv (DE 55) are also broken into tags under \"tlv\". Output is MASKED (PAN\n"
    "        first 6 + last 4, track data, PIN block, cryptograms, MACs hidden) unless\n"
    "        --unmasked is given (test tools only). --text prints the human-readable form.\n"
    "        With --frame none and --hex every non-empty input line is one message; with\n"
    "        --frame none and raw input the whole input is one message. With tpdu framing\n"
    "        the JSON carries \"tpdu\" (10 hex characters).\n"
    "encode  reads one or more JSON objects of that shape from stdin (\"tlv\" is ignored,\n"
    "        \"secondary\"/\"tertiary\": true force an all-zero bitmap, \"tpdu\" sets the TPDU,\n"
    "        default 6000000000) and writes each message, framed as --frame says (default\n"
    "        none), raw or as one upper-case hex line per message with --hex.\n"
    "\n"
    "--dialect NAME   a built-in dialect: ascii87, ascii87b, bcd87, ebcdic87\n"
    "--spec FILE      a dialect spec file (format: docs/iso8583.md)\n"
    "--frame KIND     none (default), 2b (2-byte length), 4a (4 ASCII digits), tpdu\n"
    "--max-frame N    largest accepted frame body (default 8192)\n"
    "\n"
    "Exit status: 0 ok, 1 usage or I/O error, 2 malformed message or JSON (one line on stderr).\n";

struct opts {
    int encode;
    const struct iso_dialect *d;
    struct iso_dialect loaded;
    enum iso_frame_kind frame;
    int hex, unmasked, text;
    size_t max_frame;
};

static void die_usage(const char *msg)
{
    fprintf(stderr, "isodump: %s\n%s", msg, usage);
    exit(1);
}

/* All of stdin in one buffer (the caller frees it), or NULL once the reason is said on
 * stderr. Input above MAX_INPUT exits 1. */
static unsigned char *read_all(size_t *len)
{
    size_t cap = 65536, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        goto fail;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_INPUT) {
                fprintf(stderr, "isodump: input larger than %u bytes\n", MAX_INPUT);
                exit(1);
            }
            cap *= 2;
            unsigned char *nb = realloc(buf, cap);
            if (!nb)
                goto fail;
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            if (ferror(stdin))
                goto fail;
            break;
        }
    }
    *len = n;
    return buf;
fail:
    fprintf(stderr, "isodump: cannot read stdin: %s\n", strerror(errno));
    free(buf);
    return NULL;
}

/* Hex text (whitespace ignored) → bytes in place. Returns the byte count or -1. */
static long hex_to_bytes(unsigned char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            s[o++] = s[i];
    /* at_hex_decode checks every character before it writes, and writes byte i from
     * characters 2i and 2i+1: decoding in place is safe. */
    return at_hex_decode((const char *)s, o, s, o / 2);
}

static void print_hex(FILE *fp, const uint8_t *p, size_t n)
{
    char hex[2 * 256 + 1];
    while (n > 0) {
        size_t k = n < 256 ? n : 256;
        at_hex_encode(p, k, hex);
        fputs(hex, fp);
        p += k;
        n -= k;
    }
}

static int decode_one(const struct opts *o, const uint8_t *msg, size_t len, const uint8_t *tpdu,
                      size_t index, struct iso_msg *m, char *out, size_t outcap)
{
    struct iso_err err = { 0 };
    if (iso_unpack(o->d, msg, len, m, &err) != 0) {
        fprintf(stderr, "isodump: message %zu: %s: field %d, offset %zu: %s\n", index,
                iso_strerror(err.code), err.field, err.offset, err.reason);
        return 2;
    }
    unsigned flags = (o->text ? 0 : ISO_DESCRIBE_JSON) | (o->unmasked ? ISO_DESCRIBE_UNMASKED : 0);
    int n = iso_describe(o->d, m, flags, out, outcap);
    if (n < 0) {
        fprintf(stderr, "isodump: message %zu: rendering failed: %s\n", index, iso_strerror(n));
        return 2;
    }
    if (tpdu && !o->text) {
        printf("{\"tpdu\":\"");
        print_hex(stdout, tpdu, ISO_TPDU_LEN);
        printf("\",%s\n", out + 1);
    } else {
        if (tpdu) {
            printf("TPDU ");
            print_hex(stdout, tpdu, ISO_TPDU_LEN);
            printf("\n");
        }
        size_t l = strlen(out);
        printf("%s%s", out, l && out[l - 1] == '\n' ? "" : "\n");
    }
    return 0;
}

/* A message and its arena of ARENA_SIZE in one allocation (one free), or NULL. */
static struct iso_msg *msg_new(void)
{
    struct iso_msg *m = malloc(sizeof *m + ARENA_SIZE);
    if (m)
        iso_msg_init(m, (uint8_t *)(m + 1), ARENA_SIZE);
    return m;
}

static int do_decode(const struct opts *o)
{
    size_t len;
    unsigned char *in = read_all(&len);
    if (!in)
        return 1;
    size_t outcap = ARENA_SIZE;
    char *out = malloc(outcap);
    struct iso_msg *m = msg_new();
    if (!out || !m) {
        fprintf(stderr, "isodump: out of memory\n");
        return 1;
    }
    int rc = 0;
    size_t index = 0;
    if (o->frame == ISO_FRAME_NONE && o->hex) {
        /* One message per non-empty line. */
        size_t pos = 0;
        while (pos < len && rc == 0) {
            size_t e = pos;
            while (e < len && in[e] != '\n')
                e++;
            long n = hex_to_bytes(in + pos, e - pos);
            if (n < 0) {
                fprintf(stderr, "isodump: line %zu: not hex text\n", index + 1);
                rc = 2;
            } else if (n > 0) {
                index++;
                if ((size_t)n > ARENA_SIZE / 2) {
                    fprintf(stderr, "isodump: message %zu: too large\n", index);
                    rc = 2;
                } else {
                    rc = decode_one(o, in + pos, (size_t)n, NULL, index, m, out, outcap);
                }
            }
            pos = e + 1;
        }
    } else {
        if (o->hex) {
            long n = hex_to_bytes(in, len);
            if (n < 0) {
                fprintf(stderr, "isodump: input is not hex text\n");
                rc = 2;
                goto done;
            }
            len = (size_t)n;
        }
        size_t pos = 0;
        size_t max = o->frame == ISO_FRAME_NONE ? ARENA_SIZE / 2 : o->max_frame;
        while (pos < len && rc == 0) {
            struct iso_frame fr;
            struct iso_err err = { 0 };
            int fs = iso_frame_parse(o->frame, max, in + pos, len - pos, &fr, &err);
            index++;
            if (fs < 0) {
                fprintf(stderr, "isodump: frame %zu at input offset %zu: %s: %s\n", index, pos,
                        iso_strerror(err.code), err.reason);
                rc = 2;
            } else if (fs == ISO_FRAME_NEED_MORE) {
                fprintf(stderr,
                        "isodump: frame %zu: input ends inside the frame (%zu of %zu "
                        "bytes)\n",
                        index, len - pos, fr.need);
                rc = 2;
            } else {
                const uint8_t *tpdu = o->frame == ISO_FRAME_TPDU ? in + pos + fr.tpdu_off : NULL;
                rc = decode_one(o, in + pos + fr.msg_off, fr.msg_len, tpdu, index, m, out, outcap);
                pos += fr.consume;
            }
        }
        if (index == 0 && rc == 0) {
            fprintf(stderr, "isodump: no message in the input\n");
            rc = 2;
        }
    }
done:
    free(in);
    free(out);
    free(m);
    return rc;
}

/* Fills m from one JSON object. Returns 0 or prints the problem and returns 2. */
static int json_to_msg(const struct opts *o, json_t *obj, size_t index, struct iso_msg *m,
                       uint8_t tpdu[ISO_TPDU_LEN])
{
    iso_msg_clear(m);
    if (!json_is_object(obj)) {
        fprintf(stderr, "isodump: object %zu: not a JSON object\n", index);
        return 2;
    }
    const char *mti = json_string_value(json_object_get(obj, "mti"));
    if (!mti || iso_set_mti(m, mti) != 0) {
        fprintf(stderr, "isodump: object %zu: \"mti\" must be four digits\n", index);
        return 2;
    }
    if (json_is_true(json_object_get(obj, "secondary")))
        m->flags |= ISO_MSG_SECONDARY;
    if (json_is_true(json_object_get(obj, "tertiary")))
        m->flags |= ISO_MSG_TERTIARY;
    json_t *t = json_object_get(obj, "tpdu");
    if (t) {
        const char *s = json_string_value(t);
        if (!s || strlen(s) != 2 * ISO_TPDU_LEN ||
            at_hex_decode(s, 2 * ISO_TPDU_LEN, tpdu, ISO_TPDU_LEN) != ISO_TPDU_LEN) {
            fprintf(stderr, "isodump: object %zu: \"tpdu\" must be 10 hex characters\n", index);
            return 2;
        }
    }
    json_t *fields = json_object_get(obj, "fields");
    if (!json_is_object(fields)) {
        fprintf(stderr, "isodump: object %zu: \"fields\" must be an object\n", index);
        return 2;
    }
    const char *key;
    json_t *val;
    json_object_foreach(fields, key, val)
    {
        char *end;
        long f = strtol(key, &end, 10);
        if (*key < '0' || *key > '9' || *end || f < 2 || f > ISO_MAX_FIELD) {
            fprintf(stderr, "isodump: object %zu: field key \"%.8s\" is not 2-192\n", index, key);
            return 2;
        }
        const char *s = json_string_value(val);
        if (!s) {
            fprintf(stderr, "isodump: object %zu: field %ld must be a string\n", index, f);
            return 2;
        }
        size_t n = json_string_length(val);
        int rc;
        if (o->d->field[f].type == ISO_T_B) {
            if (n % 2) {
                fprintf(stderr, "isodump: object %zu: field %ld: odd number of hex digits\n", index,
                        f);
                return 2;
            }
            uint8_t *dst = m->arena + m->arena_used;
            if (m->arena_cap - m->arena_used < n / 2) {
                fprintf(stderr, "isodump: object %zu: message too large\n", index);
                return 2;
            }
            if (at_hex_decode(s, n, dst, n / 2) < 0) {
                fprintf(stderr, "isodump: object %zu: field %ld: not hex\n", index, f);
                return 2;
            }
            m->arena_used += n / 2;
            rc = iso_set(m, (int)f, dst, n / 2);
        } else {
            rc = iso_set_copy(m, (int)f, s, n);
        }
        if (rc) {
            fprintf(stderr, "isodump: object %zu: field %ld: %s\n", index, f, iso_strerror(rc));
            return 2;
        }
    }
    return 0;
}

static int do_encode(const struct opts *o)
{
    size_t len;
    unsigned char *in = read_all(&len);
    if (!in)
        return 1;
    uint8_t *out = malloc(MAX_MSG + ISO_FRAME_MAX_HEADER);
    struct iso_msg *m = msg_new();
    if (!out || !m) {
        fprintf(stderr, "isodump: out of memory\n");
        return 1;
    }
    int rc = 0;
    size_t pos = 0, index = 0;
    for (;;) {
        while (pos < len &&
               (in[pos] == ' ' || in[pos] == '\n' || in[pos] == '\t' || in[pos] == '\r'))
            pos++;
        if (pos >= len)
            break;
        index++;
        json_error_t jerr;
        json_t *obj = json_loadb((const char *)in + pos, len - pos, JSON_DISABLE_EOF_CHECK, &jerr);
        if (!obj) {
            fprintf(stderr, "isodump: object %zu: invalid JSON: %s (line %d)\n", index, jerr.text,
                    jerr.line);
            rc = 2;
            break;
        }
        pos += jerr.position;
        uint8_t tpdu[ISO_TPDU_LEN] = { 0x60, 0, 0, 0, 0 };
        rc = json_to_msg(o, obj, index, m, tpdu);
        json_decref(obj);
        if (rc)
            break;
        size_t hl = iso_frame_header_len(o->frame), n;
        struct iso_err err = { 0 };
        if (iso_pack(o->d, m, out + hl, MAX_MSG, &n, &err) != 0) {
            fprintf(stderr, "isodump: object %zu: %s: field %d: %s\n", index,
                    iso_strerror(err.code), err.field, err.reason);
            rc = 2;
            break;
        }
        if (iso_frame_header(o->frame, o->max_frame, n, tpdu, out, hl, &err) != 0) {
            fprintf(stderr, "isodump: object %zu: %s: %s\n", index, iso_strerror(err.code),
                    err.reason);
            rc = 2;
            break;
        }
        if (o->hex) {
            print_hex(stdout, out, hl + n);
            putchar('\n');
        } else if (fwrite(out, 1, hl + n, stdout) != hl + n) {
            fprintf(stderr, "isodump: write error\n");
            rc = 1;
            break;
        }
    }
    if (rc == 0 && index == 0) {
        fprintf(stderr, "isodump: no JSON object in the input\n");
        rc = 2;
    }
    free(in);
    free(out);
    free(m);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o = { 0 };
    o.frame = ISO_FRAME_NONE;
    o.max_frame = ISO_FRAME_DEFAULT_MAX;
    if (argc < 2)
        die_usage("missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "encode") == 0)
        o.encode = 1;
    else if (strcmp(argv[1], "decode") != 0)
        die_usage("command must be decode or encode");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dialect") == 0 && v) {
            o.d = iso_dialect_find(v);
            if (!o.d) {
                fprintf(stderr, "isodump: unknown dialect '%s'\n", v);
                return 1;
            }
            i++;
        } else if (strcmp(a, "--spec") == 0 && v) {
            struct iso_err err = { 0 };
            if (iso_dialect_load(v, &o.loaded, &err) != 0) {
                fprintf(stderr, "isodump: %s: %s: %s\n", v, iso_strerror(err.code), err.reason);
                return 1;
            }
            o.d = &o.loaded;
            i++;
        } else if (strcmp(a, "--frame") == 0 && v) {
            if (iso_frame_kind_parse(v, &o.frame) != 0)
                die_usage("--frame must be none, 2b, 4a or tpdu");
            i++;
        } else if (strcmp(a, "--max-frame") == 0 && v) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || n == 0 || n > 65535)
                die_usage("--max-frame must be 1-65535");
            o.max_frame = n;
            i++;
        } else if (strcmp(a, "--hex") == 0) {
            o.hex = 1;
        } else if (strcmp(a, "--unmasked") == 0 && !o.encode) {
            o.unmasked = 1;
        } else if (strcmp(a, "--text") == 0 && !o.encode) {
            o.text = 1;
        } else if (strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "isodump: unknown or incomplete option '%s'\n", a);
            return 1;
        }
    }
    if (!o.d)
        die_usage("--dialect or --spec is required");
    return o.encode ? do_encode(&o) : do_decode(&o);
}
