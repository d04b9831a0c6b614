/* Config files: an INI-like tokenizer plus a settings table (pgbouncer's
 * habit: one row per key with its type, default, limits and flags), so every
 * daemon documents and validates its keys the same way.
 *
 *   # comment
 *   log_file = var/log/switchd.log
 *   [listener acq]            # section type "listener", name "acq"
 *   address = 127.0.0.1:8583
 *
 * Unknown keys are errors, never silently ignored. */
#ifndef ATLAS_CONF_H
#define ATLAS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called once per "key = value" line. section/name are "" before any [section].
 * Returns 0, or -1 after writing a sentence into err (errcap bytes). */
typedef int (*at_conf_cb)(void *ctx, const char *section, const char *name, const char *key,
                          const char *value, char *err, size_t errcap);

/* Reads path and calls cb per entry. On any error (I/O, syntax, or cb
 * refusing) returns -1 with "path:line: reason" in err. */
__attribute__((warn_unused_result)) int at_conf_load(const char *path, at_conf_cb cb, void *ctx,
                                                     char *err, size_t errcap);

enum at_setting_type {
    AT_SET_STR,    /* char[size] at offset */
    AT_SET_U64,    /* uint64_t at offset, 0..max */
    AT_SET_BOOL,   /* bool at offset */
    AT_SET_DOUBLE, /* double at offset: a decimal number in 0..max (max 0: no bound) */
};

#define AT_SET_RELOADABLE 0x1 /* takes effect on SIGHUP without restart */
#define AT_SET_SENSITIVE  0x2 /* value never printed (passwords, conninfo) */
/* What a value must look like beyond its type (for command-line options and key=value words as
 * much as for config keys). Defaults are held to them too: a row whose zero means "not given"
 * has no default (NULL). */
#define AT_SET_NONZERO 0x4 /* AT_SET_U64 from 1, AT_SET_DOUBLE above 0 */
#define AT_SET_DIGITS  0x8 /* AT_SET_STR: decimal digits only */
/* AT_SET_STR: at least n characters (1..255; size - 1 is the most). */
#define AT_SET_MINLEN(n)    (((unsigned)(n)&0xFFu) << 8)
#define AT_SET_MINLEN_OF(f) (((f) >> 8) & 0xFFu)

/* One row per key. The rows are written positionally (every field, in this order), so a new
 * need is met with a type or a flag, never with a new field. */
struct at_setting {
    const char *name;
    enum at_setting_type type;
    size_t offset; /* offsetof(struct your_conf, field) */
    size_t size;   /* AT_SET_STR: sizeof the char array */
    /* NULL: no default, the field keeps what it holds (zero, "": "not given", and the program
     * decides: the help says how) */
    const char *default_value;
    uint64_t max; /* AT_SET_U64 and AT_SET_DOUBLE only */
    unsigned flags;
    const char *help;
};

/* Writes every default of the table into base (rows without one are left alone). Returns 0 or
 * -1 (a default that does not parse: a programming error, reported in err). */
int at_settings_defaults(const struct at_setting *table, size_t n, void *base, char *err,
                         size_t errcap);

/* The row of table named key, or NULL. */
const struct at_setting *at_settings_find(const struct at_setting *table, size_t n,
                                          const char *key);

/* Parses value as row s says and stores it into base. value NULL is a bool given bare (a
 * command-line flag, a scenario's bare word): true; for other types an error. Returns 0, or -1
 * with a sentence naming the key in err (base untouched). */
__attribute__((warn_unused_result)) int at_setting_store(const struct at_setting *s, void *base,
                                                         const char *value, char *err,
                                                         size_t errcap);

/* Finds key in table and stores the parsed value into base. Returns 0, or
 * -1 with "unknown key" / "bad value" sentences in err. */
int at_settings_set(const struct at_setting *table, size_t n, void *base, const char *key,
                    const char *value, char *err, size_t errcap);

/* What row s accepts, in words: "an integer in 1..999999", "12 to 19 digits", "4 digits",
 * "at most 63 characters", "a number in 0..3600", "a number above 0, up to 86400",
 * "yes/no/true/false/on/off/1/0". Returns out. */
const char *at_setting_describe(const struct at_setting *s, char *out, size_t cap);

/* Prints the table as documentation (name, type, default, max, flags, help). */
void at_settings_print_help(const struct at_setting *table, size_t n, const char *section,
                            void *file /* FILE * */);

/* ------------------------------------------------------------------ command lines */

/* Command-line options are the rows of a table: "--name VALUE", and a bool is a bare flag
 * ("--quiet") that turns it on. */

/* Reads the option at argv[*i], which starts with "--", against table. Returns 1 with its row
 * in *row and its value in *value (NULL for a bool), *i moved to the last argument read; 0 when
 * the name is not in table (nothing read: the caller may try another table or refuse it); -1
 * with a sentence in err when its value is missing. */
__attribute__((warn_unused_result)) int
at_settings_arg(const struct at_setting *table, size_t n, int argc, char *const argv[], int *i,
                const struct at_setting **row, const char **value, char *err, size_t errcap);

/* Prints the table as options: what each accepts and its default, then its help. prefix "--": as
 * command-line options ("--name VALUE",
 * "--flag"); prefix "": as key=value words ("name=VALUE", "flag"). */
void at_settings_print_options(const struct at_setting *table, size_t n, const char *prefix,
                               void *file /* FILE * */);

#endif
