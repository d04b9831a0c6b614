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

static const struct at_setting *find(const struct at_setting *table, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, key) == 0)
            return &table[i];
    return NULL;
}

static int store(const struct at_setting *s, void *base, const char *value, char *err,
                 size_t errcap)
{
    char *field = (char *)base + s->offset;
    switch (s->type) {
    case AT_SET_STR:
        if (strlen(value) >= s->size) {
            snprintf(err, errcap, "value of '%s' longer than %zu characters", s->name, s->size - 1);
            return -1;
        }
        strcpy(field, value);
        return 0;
    case AT_SET_U64: {
        uint64_t v;
        if (!at_parse_u64(value, s->max ? s->max : UINT64_MAX, &v)) {
            snprintf(err, errcap, "'%s' must be an integer in 0..%llu", s->name,
                     (unsigned long long)(s->max ? s->max : UINT64_MAX));
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case AT_SET_BOOL: {
        bool b;
        if (!at_parse_bool(value, &b)) {
            snprintf(err, errcap, "'%s' must be yes/no/true/false/on/off/1/0", s->name);
            return -1;
        }
        memcpy(field, &b, sizeof b);
        return 0;
    }
    }
    snprintf(err, errcap, "'%s' has an unknown type", s->name);
    return -1;
}

int at_settings_defaults(const struct at_setting *table, size_t n, void *base, char *err,
                         size_t errcap)
{
    for (size_t i = 0; i < n; i++)
        if (store(&table[i], base, table[i].default_value, err, errcap) != 0)
            return -1;
    return 0;
}

int at_settings_set(const struct at_setting *table, size_t n, void *base, const char *key,
                    const char *value, char *err, size_t errcap)
{
    const struct at_setting *s = find(table, n, key);
    if (!s) {
        snprintf(err, errcap, "unknown key '%s'", key);
        return -1;
    }
    return store(s, base, value, err, errcap);
}

void at_settings_print_help(const struct at_setting *table, size_t n, const char *section,
                            void *file)
{
    FILE *f = file;
    static const char *const types[] = { "string", "integer", "bool" };
    if (section && *section)
        fprintf(f, "[%s]\n", section);
    for (size_t i = 0; i < n; i++) {
        const struct at_setting *s = &table[i];
        char max[32] = "";
        if (s->type == AT_SET_U64 && s->max)
            snprintf(max, sizeof max, ", max %llu", (unsigned long long)s->max);
        fprintf(f, "  %-22s %-8s default %s%s%s%s\n      %s\n", s->name, types[s->type],
                (s->flags & AT_SET_SENSITIVE) ? "(hidden)" : s->default_value, max,
                (s->flags & AT_SET_RELOADABLE) ? ", reloadable" : "",
                (s->flags & AT_SET_SENSITIVE) ? ", sensitive" : "", s->help);
    }
}
