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
    AT_SET_STR,  /* char[size] at offset */
    AT_SET_U64,  /* uint64_t at offset, 0..max */
    AT_SET_BOOL, /* bool at offset */
};

#define AT_SET_RELOADABLE 0x1 /* takes effect on SIGHUP without restart */
#define AT_SET_SENSITIVE  0x2 /* value never printed (passwords, conninfo) */

struct at_setting {
    const char *name;
    enum at_setting_type type;
    size_t offset; /* offsetof(struct your_conf, field) */
    size_t size;   /* AT_SET_STR: sizeof the char array */
    const char *default_value;
    uint64_t max; /* AT_SET_U64 only */
    unsigned flags;
    const char *help;
};

/* Writes every default of the table into base. Returns 0 or -1 (a default
 * that does not parse: a programming error, reported in err). */
int at_settings_defaults(const struct at_setting *table, size_t n, void *base, char *err,
                         size_t errcap);

/* Finds key in table and stores the parsed value into base. Returns 0, or
 * -1 with "unknown key" / "bad value" sentences in err. */
int at_settings_set(const struct at_setting *table, size_t n, void *base, const char *key,
                    const char *value, char *err, size_t errcap);

/* Prints the table as documentation (name, type, default, max, flags, help). */
void at_settings_print_help(const struct at_setting *table, size_t n, const char *section,
                            void *file /* FILE * */);

#endif
