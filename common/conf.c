/* INI-like config tokenizer and the settings table that validates values. */
#include "conf.h"
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Strips a trailing " # comment" that is outside double quotes. */
static void strip_comment(char *s)
{
    bool quoted = false;
    for (char *p = s; *p; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '#' && !quoted && (p == s || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
    }
}

int at_conf_load(const char *path, at_conf_cb cb, void *ctx, char *err, size_t errcap)
{
    char line[1024], section[64] = "", name[64] = "", why[256];
    unsigned lineno = 0;
    int rc = 0;
    FILE *f = fopen(path, "r");

    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errcap, "%s:%u: line longer than %zu bytes", path, lineno,
                     sizeof line - 2);
            rc = -1;
            break;
        }
        strip_comment(line);
        char *s = trim(line);
        if (*s == '\0')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close[1] != '\0') {
                snprintf(err, errcap, "%s:%u: malformed section header", path, lineno);
                rc = -1;
                break;
            }
            *close = '\0';
            char *inner = trim(s + 1);
            char *space = strpbrk(inner, " \t");
            const char *nm = "";
            if (space) {
                *space = '\0';
                nm = trim(space + 1);
            }
            if (strlen(inner) >= sizeof section || strlen(nm) >= sizeof name || !*inner) {
                snprintf(err, errcap, "%s:%u: section type or name empty or too long", path,
                         lineno);
                rc = -1;
                break;
            }
            strcpy(section, inner);
            strcpy(name, nm);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errcap, "%s:%u: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (!*key) {
            snprintf(err, errcap, "%s:%u: empty key", path, lineno);
            rc = -1;
            break;
        }
        why[0] = '\0';
        if (cb(ctx, section, name, key, value, why, sizeof why) != 0) {
            snprintf(err, errcap, "%s:%u: %s", path, lineno, why[0] ? why : "rejected");
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errcap, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

const struct at_setting *at_settings_find(const struct at_setting *table, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, key) == 0)
            return &table[i];
    return NULL;
}

static uint64_t u64_max(const struct at_setting *s)
{
    return s->max ? s->max : UINT64_MAX;
}

const char *at_setting_describe(const struct at_setting *s, char *out, size_t cap)
{
    unsigned min = AT_SET_MINLEN_OF(s->flags);
    bool nonzero = s->flags & AT_SET_NONZERO;
    switch (s->type) {
    case AT_SET_STR: {
        size_t most = s->size ? s->size - 1 : 0;
        const char *unit = (s->flags & AT_SET_DIGITS) ? "digits" : "characters";
        if (min >= most)
            snprintf(out, cap, "%zu %s", most, unit);
        else if (min)
            snprintf(out, cap, "%u to %zu %s", min, most, unit);
        else
            snprintf(out, cap, "at most %zu %s", most, unit);
        break;
    }
    case AT_SET_U64:
        snprintf(out, cap, "an integer in %d..%llu", nonzero ? 1 : 0,
                 (unsigned long long)u64_max(s));
        break;
    case AT_SET_BOOL:
        snprintf(out, cap, "yes/no/true/false/on/off/1/0");
        break;
    case AT_SET_DOUBLE:
        if (!s->max)
            snprintf(out, cap, "%s", nonzero ? "a number above 0" : "a number from 0");
        else if (nonzero)
            snprintf(out, cap, "a number above 0, up to %llu", (unsigned long long)s->max);
        else
            snprintf(out, cap, "a number in 0..%llu", (unsigned long long)s->max);
        break;
    default:
        snprintf(out, cap, "?");
    }
    return out;
}

/* "'name' must be <what the row accepts>". */
static int refuse(const struct at_setting *s, char *err, size_t errcap)
{
    char what[96];
    snprintf(err, errcap, "'%s' must be %s", s->name, at_setting_describe(s, what, sizeof what));
    return -1;
}

/* Parses value into row s's field of base, written only when the value is good. */
static int store(const struct at_setting *s, void *base, const char *value, char *err,
                 size_t errcap)
{
    char *field = (char *)base + s->offset;
    if (!value && s->type != AT_SET_BOOL) {
        snprintf(err, errcap, "'%s' needs a value", s->name);
        return -1;
    }
    switch (s->type) {
    case AT_SET_STR: {
        size_t len = strlen(value);
        if (len >= s->size) {
            snprintf(err, errcap, "value of '%s' longer than %zu characters", s->name, s->size - 1);
            return -1;
        }
        if (len < AT_SET_MINLEN_OF(s->flags) ||
            ((s->flags & AT_SET_DIGITS) && !at_is_digits(value, 0, SIZE_MAX)))
            return refuse(s, err, errcap);
        memcpy(field, value, len + 1);
        return 0;
    }
    case AT_SET_U64: {
        uint64_t v;
        if (!at_parse_u64(value, u64_max(s), &v) || ((s->flags & AT_SET_NONZERO) && v == 0))
            return refuse(s, err, errcap);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case AT_SET_BOOL: {
        bool b = true;
        if (value && !at_parse_bool(value, &b))
            return refuse(s, err, errcap);
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case AT_SET_DOUBLE: {
        double v;
        if (!at_parse_double(value, &v) || (s->max && v > (double)s->max) ||
            ((s->flags & AT_SET_NONZERO) && v == 0))
            return refuse(s, err, errcap);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    }
    snprintf(err, errcap, "'%s' has an unknown type", s->name);
    return -1;
}

int at_setting_store(const struct at_setting *s, void *base, const char *value, char *err,
                     size_t errcap)
{
    return store(s, base, value, err, errcap);
}

int at_settings_defaults(const struct at_setting *table, size_t n, void *base, char *err,
                         size_t errcap)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].default_value &&
            store(&table[i], base, table[i].default_value, err, errcap) != 0)
            return -1;
    return 0;
}

int at_settings_set(const struct at_setting *table, size_t n, void *base, const char *key,
                    const char *value, char *err, size_t errcap)
{
    const struct at_setting *s = at_settings_find(table, n, key);
    if (!s) {
        snprintf(err, errcap, "unknown key '%s'", key);
        return -1;
    }
    return store(s, base, value, err, errcap);
}

static const char *const type_names[] = { "string", "integer", "bool", "decimal" };

void at_settings_print_help(const struct at_setting *table, size_t n, const char *section,
                            void *file)
{
    FILE *f = file;
    if (section && *section)
        fprintf(f, "[%s]\n", section);
    for (size_t i = 0; i < n; i++) {
        const struct at_setting *s = &table[i];
        char max[32] = "";
        if ((s->type == AT_SET_U64 || s->type == AT_SET_DOUBLE) && s->max)
            snprintf(max, sizeof max, ", max %llu", (unsigned long long)s->max);
        fprintf(f, "  %-22s %-8s default %s%s%s%s\n      %s\n", s->name, type_names[s->type],
                (s->flags & AT_SET_SENSITIVE) ? "(hidden)"
                : s->default_value            ? s->default_value
                                              : "(none)",
                max, (s->flags & AT_SET_RELOADABLE) ? ", reloadable" : "",
                (s->flags & AT_SET_SENSITIVE) ? ", sensitive" : "", s->help);
    }
}

/* ------------------------------------------------------------------ command lines */

int at_settings_arg(const struct at_setting *table, size_t n, int argc, char *const argv[], int *i,
                    const struct at_setting **row, const char **value, char *err, size_t errcap)
{
    const struct at_setting *s = at_settings_find(table, n, argv[*i] + 2);
    if (!s)
        return 0;
    if (s->type == AT_SET_BOOL) {
        *value = NULL;
    } else if (*i + 1 >= argc) {
        snprintf(err, errcap, "--%s needs a value", s->name);
        return -1;
    } else {
        *value = argv[++*i];
    }
    *row = s;
    return 1;
}

/* Whether to print a row's default: not a secret, and not a flag's (off unless given). */
static bool default_shown(const struct at_setting *s)
{
    return s->default_value && !(s->flags & AT_SET_SENSITIVE) && s->type != AT_SET_BOOL;
}

/* Prints text indented by indent, its lines broken at spaces before width columns. */
static void print_wrapped(FILE *f, const char *text, int indent, int width)
{
    const char *p = text;
    while (*p) {
        size_t room = (size_t)(width - indent), n = strlen(p);
        if (n > room) {
            n = room;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0) /* one word longer than the line: as it is */
                n = strcspn(p, " ");
        }
        fprintf(f, "%*s%.*s\n", indent, "", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

void at_settings_print_options(const struct at_setting *table, size_t n, const char *prefix,
                               void *file)
{
    FILE *f = file;
    static const char *const placeholders[] = { "TEXT", "N", "", "X" };
    const char *sep = prefix[0] ? " " : "=";
    for (size_t i = 0; i < n; i++) {
        const struct at_setting *s = &table[i];
        char left[64], what[96];
        snprintf(left, sizeof left, "%s%s%s%s", prefix, s->name, s->type == AT_SET_BOOL ? "" : sep,
                 placeholders[s->type]);
        if (s->type == AT_SET_BOOL)
            snprintf(what, sizeof what, "a flag");
        else
            at_setting_describe(s, what, sizeof what);
        bool show = default_shown(s);
        fprintf(f, "  %-28s %s%s%s\n", left, what, show ? "; default " : "",
                show ? s->default_value : "");
        print_wrapped(f, s->help, 6, 100);
    }
}
