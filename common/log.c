/* JSON-lines logger. One process-wide sink; a line is built on the stack and
 * written with one write(2) (O_APPEND keeps concurrent writers line-atomic),
 * or appended to a buffer that the daemon flushes once per loop turn. Every
 * WRITEBACK_BYTES written to a file, the kernel is asked to start writing them
 * out (below). */
#include "log.h"
#include "clock.h"
#include "fmt.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192
#define BUF_BYTES      65536

/* Left alone, Linux writes a file's dirty pages back when the file has been dirty
 * for 30 s (vm.dirty_expire_centisecs), all of them at once: a log taking 1 MB/s
 * (switchd's txn lines at 2,000/s) becomes a burst of ~30 MB every 30 s on the
 * disk PostgreSQL flushes its WAL to — the kind of burst that, from PostgreSQL's
 * own table files, was measured to stall every commit 30-60 ms (docs/BENCHMARKS.md
 * "Issue 17, fourth pass"). Asking for write-out every 512 KiB keeps it a trickle,
 * as PostgreSQL does for the files it writes itself (*_flush_after). */
#define WRITEBACK_BYTES (512u * 1024u)

static struct {
    int fd;
    char path[512];
    const char *program;
    enum at_log_level level;
    bool buffered;
    size_t unhinted; /* bytes written to the file since the last write-out request */
    size_t buf_len;
    char buf[BUF_BYTES];
} g_log = { .fd = 2, .program = "atlas", .level = AT_LOG_INFO };

static const char *const level_names[AT_LOG_level_max] = { "debug", "info", "warn", "error" };

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int at_log_open(const char *path, const char *program)
{
    if (program)
        g_log.program = program;
    if (!path || strcmp(path, "-") == 0) {
        g_log.fd = 2;
        g_log.path[0] = '\0';
        return 0;
    }
    if (strlen(path) >= sizeof g_log.path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open_path(path);
    if (fd == -1)
        return -1;
    at_log_flush();
    if (g_log.fd > 2)
        close(g_log.fd);
    g_log.fd = fd;
    strcpy(g_log.path, path);
    return 0;
}

int at_log_reopen(void)
{
    at_log_flush();
    if (g_log.path[0] == '\0')
        return 0;
    int fd = open_path(g_log.path);
    if (fd == -1)
        return -1;
    if (g_log.fd > 2)
        close(g_log.fd);
    g_log.fd = fd;
    return 0;
}

void at_log_close(void)
{
    at_log_flush();
    if (g_log.fd > 2)
        close(g_log.fd);
    g_log.fd = 2;
    g_log.path[0] = '\0';
}

void at_log_set_level(enum at_log_level level)
{
    if (level < AT_LOG_level_max)
        g_log.level = level;
}

bool at_log_enabled(enum at_log_level level)
{
    return level >= g_log.level;
}

int at_log_level_parse(const char *s)
{
    for (int i = 0; i < AT_LOG_level_max; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void at_log_set_buffered(bool on)
{
    if (!on)
        at_log_flush();
    g_log.buffered = on;
}

/* Starts the write-out of the file's dirty pages (asynchronous: does not wait for
 * the disk). Not for stderr, which may be a pipe or a terminal. */
static void writeback_hint(size_t n)
{
    if (g_log.path[0] == '\0')
        return;
    g_log.unhinted += n;
    if (g_log.unhinted < WRITEBACK_BYTES)
        return;
    g_log.unhinted = 0;
    (void)sync_file_range(g_log.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static void write_all(const char *p, size_t n)
{
    size_t total = n;
    while (n > 0) {
        ssize_t w = write(g_log.fd, p, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        p += w;
        n -= (size_t)w;
    }
    writeback_hint(total);
}

void at_log_flush(void)
{
    if (g_log.buf_len > 0) {
        write_all(g_log.buf, g_log.buf_len);
        g_log.buf_len = 0;
    }
}

/* Line builder: appends while there is room, remembers truncation. */
struct line {
    char *p;
    size_t len, cap;
    bool truncated;
};

/* All or nothing: a piece that does not fit marks the line truncated. */
static void put(struct line *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > l->cap) {
        l->truncated = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* A JSON string (json.h's escaping), all or nothing like put(). */
static void put_escaped(struct line *l, const char *s, size_t n)
{
    if (l->truncated)
        return;
    size_t room = l->cap - l->len, k = at_json_quote(l->p + l->len, room, s, n);
    if (k > room)
        l->truncated = true;
    else
        l->len += k;
}

/* "%llu" of v into out (at least 20 bytes, no NUL): its length. */
static size_t put_u64(char *out, uint64_t v)
{
    char rev[20];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    return n;
}

void at_log_kv(enum at_log_level level, const char *event, const struct at_kv *kv, size_t n)
{
    char raw[LINE_MAX_BYTES];
    struct line l = { .p = raw, .cap = sizeof raw - 48 }; /* room for the closing */
    char tmp[64];
    int k;

    if (!at_log_enabled(level))
        return;
    put(&l, "{\"ts\":\"", 7);
    k = at_format_utc(at_wall_us(), tmp, sizeof tmp);
    put(&l, tmp, (size_t)k);
    put(&l, "\",\"level\":\"", 11);
    put(&l, level_names[level], strlen(level_names[level]));
    put(&l, "\",\"prog\":", 9);
    put_escaped(&l, g_log.program, strlen(g_log.program));
    put(&l, ",\"event\":", 9);
    put_escaped(&l, event, strlen(event));
    for (size_t i = 0; i < n && !l.truncated; i++) {
        size_t field_start = l.len; /* a field that does not fit is dropped whole */
        put(&l, ",", 1);
        put_escaped(&l, kv[i].key, strlen(kv[i].key));
        put(&l, ":", 1);
        switch (kv[i].type) {
        case AT_KV_STR:
            if (kv[i].v.s)
                put_escaped(&l, kv[i].v.s, strlen(kv[i].v.s));
            else
                put(&l, "null", 4);
            break;
        case AT_KV_STRN:
            put_escaped(&l, kv[i].v.s, kv[i].n);
            break;
        case AT_KV_INT: /* integers without snprintf: switchd's txn line has nine */
            put(&l, tmp, at_put_i64(tmp, kv[i].v.i));
            break;
        case AT_KV_UINT:
            put(&l, tmp, put_u64(tmp, kv[i].v.u));
            break;
        case AT_KV_DBL:
            k = snprintf(tmp, sizeof tmp, "%.6g", kv[i].v.d);
            put(&l, tmp, (size_t)k);
            break;
        case AT_KV_BOOL:
            put(&l, kv[i].v.b ? "true" : "false", kv[i].v.b ? 4 : 5);
            break;
        }
        if (l.truncated)
            l.len = field_start;
    }
    bool truncated = l.truncated;
    l.truncated = false;
    l.cap = sizeof raw; /* the reserved tail always fits the closing */
    if (truncated)
        put(&l, ",\"truncated\":true", 17);
    put(&l, "}\n", 2);

    if (!g_log.buffered) {
        write_all(raw, l.len);
        return;
    }
    if (g_log.buf_len + l.len > sizeof g_log.buf)
        at_log_flush();
    memcpy(g_log.buf + g_log.buf_len, raw, l.len);
    g_log.buf_len += l.len;
}

char *at_mask_pan(const char *pan, size_t len, char *out)
{
    size_t n = len > 19 ? 19 : len;
    for (size_t i = 0; i < n; i++) {
        bool keep = (n >= 13 && i < 6) || i >= n - 4;
        char c = pan[i];
        out[i] = (keep && c >= '0' && c <= '9') ? c : '*';
    }
    out[n] = '\0';
    return out;
}
