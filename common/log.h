/* Structured logging: one JSON object per line, typed key/value fields.
 *
 *   at_log(AT_LOG_INFO, "txn_done", AT_STR("mti", "0210"), AT_INT("latency_us", 412));
 *
 * Strings are escaped (control and non-ASCII bytes as \u00XX), so untrusted
 * bytes can never break a line. Card data must never be passed here: PANs are
 * masked by the caller (first 6, last 4); PIN blocks, track data, CVVs and
 * keys are never logged at all, only their sizes. Process-wide state: one log
 * per process, reopened on SIGHUP by the daemon calling at_log_reopen(). */
#ifndef ATLAS_LOG_H
#define ATLAS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum at_log_level {
    AT_LOG_DEBUG, /* developer detail, off by default */
    AT_LOG_INFO,  /* one line per transaction and per state change */
    AT_LOG_WARN,  /* something failed but the daemon recovered */
    AT_LOG_ERROR, /* something failed and a request or link was lost */
    AT_LOG_level_max
};

enum at_kv_type { AT_KV_STR, AT_KV_STRN, AT_KV_INT, AT_KV_UINT, AT_KV_DBL, AT_KV_BOOL };

struct at_kv {
    const char *key;
    enum at_kv_type type;
    size_t n; /* length for AT_KV_STRN */
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } v;
};

#define AT_STR(k, val) ((struct at_kv){ .key = (k), .type = AT_KV_STR, .v.s = (val) })
#define AT_STRN(k, val, len)                                                                       \
    ((struct at_kv){ .key = (k), .type = AT_KV_STRN, .n = (len), .v.s = (val) })
#define AT_INT(k, val)  ((struct at_kv){ .key = (k), .type = AT_KV_INT, .v.i = (int64_t)(val) })
#define AT_UINT(k, val) ((struct at_kv){ .key = (k), .type = AT_KV_UINT, .v.u = (uint64_t)(val) })
#define AT_DBL(k, val)  ((struct at_kv){ .key = (k), .type = AT_KV_DBL, .v.d = (double)(val) })
#define AT_BOOL(k, val) ((struct at_kv){ .key = (k), .type = AT_KV_BOOL, .v.b = (bool)(val) })

/* Opens the log. path NULL or "-" means stderr; otherwise the file is opened
 * O_APPEND|O_CREAT (mode 0640). program names the daemon in every line and is
 * kept by pointer (pass a string literal). Returns 0, or -1 with errno set. */
__attribute__((warn_unused_result)) int at_log_open(const char *path, const char *program);

/* Closes and reopens the same path (after logrotate renamed it). Pending
 * buffered lines are written to the old file first, so none is lost. */
int at_log_reopen(void);

/* Flushes buffered lines, then closes the file. */
void at_log_close(void);

void at_log_set_level(enum at_log_level level);
bool at_log_enabled(enum at_log_level level);

/* Parses "debug|info|warn|error". Returns -1 if unknown. */
int at_log_level_parse(const char *s);

/* In buffered mode lines collect in memory (up to 64 KiB) and are written by
 * at_log_flush() — which a daemon calls once per event-loop turn or from a
 * short timer — or when the buffer fills. Unbuffered (default): one write(2)
 * per line. */
void at_log_set_buffered(bool on);
void at_log_flush(void);

/* Writes one line. Prefer the at_log() macro. */
void at_log_kv(enum at_log_level level, const char *event, const struct at_kv *kv, size_t n);

#define at_log(level, event, ...)                                                                  \
    do {                                                                                           \
        if (at_log_enabled(level)) {                                                               \
            const struct at_kv at_kv_[] = { __VA_ARGS__ };                                         \
            at_log_kv((level), (event), at_kv_, sizeof at_kv_ / sizeof at_kv_[0]);                 \
        }                                                                                          \
    } while (0)

/* A line with no fields besides the event. */
#define at_log0(level, event) at_log_kv((level), (event), NULL, 0)

/* Writes the masked form of a PAN (first 6, '*' for the middle, last 4; a
 * PAN shorter than 13 digits is fully starred but for the last 4) into out
 * (>= 20 bytes). Non-digits are starred too. Returns out. */
char *at_mask_pan(const char *pan, size_t len, char *out);

#endif
