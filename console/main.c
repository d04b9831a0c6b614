/* atlas-console: the operator's view of a running switch. Follows switchd's
 * JSON-lines log like `tail -F` (rename and copytruncate rotations), prints one
 * aligned line per event with a live status line, or summarises finished
 * logs. One libevent loop, a short stat() poll, fixed buffers. */
#include "con.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS           100
#define READ_PER_TICK     (4u << 20) /* bytes per loop turn: keeps the UI responsive */
#define ROTATE_QUIET_MS   5000       /* default --rotate-grace */
#define PRIME_MAX_BYTES   (64u << 20)
#define STATUS_PERIOD_MS  1000
#define METRICS_PERIOD_MS 2000
#define METRICS_STALE_US  (10 * 1000000LL) /* older link states give way to the log's */
#define METRICS_MAX_BODY  (1u << 20)

static const char *const usage_text =
    "usage: atlas-console [options] LOGFILE\n"
    "       atlas-console summary LOGFILE...\n"
    "Follows a switchd JSON-lines log (like tail -F) and prints one line per event.\n"
    "  --from-start        read the file from its beginning (default: from its end)\n"
    "  --no-follow         stop at the end of the file\n"
    "  --no-color          no colours (default: colours when stdout is a terminal)\n"
    "  --no-status         no status line (default: one when stdout is a terminal)\n"
    "  --txn-only          only txn and txn_refused lines\n"
    "  --rc CODE           response code, e.g. 05\n"
    "  --terminal ID       terminal id (DE 41)\n"
    "  --issuer ID         issuer (txn and link_state lines)\n"
    "  --mti MTI           request MTI, e.g. 0200\n"
    "  --pan-last4 NNNN    last four digits of the card number\n"
    "  --min-latency T     total latency at least T (250 = 250ms, 900us, 1.5s)\n"
    "  --since TIME        2026-11-26T15:44:00Z, 15:44 (today, UTC), or 10m / 30s / 2h ago\n"
    "  --metrics URL       also poll switchd's /metrics (http://127.0.0.1:9583/metrics)\n"
    "                      for link states, journal database and backpressure\n"
    "  --rotate-grace MS   after a rotation, keep reading the old file until it has\n"
    "                      been quiet this long (default 5000)\n";

/* A followed file: the open descriptor and where we are in it. */
struct source {
    int fd;
    dev_t dev;
    ino_t ino;
    off_t off;
    int64_t last_data_us; /* wall time of the last byte read */
    struct con_lines ln;
};

struct app {
    const char *path;
    bool from_start, follow, color, status;
    struct con_filter filt;
    struct event_base *base;
    struct event *tick, *status_ev;
    struct source src;
    struct source old;   /* the rotated file, read until quiet (fd -1: none) */
    bool waiting_notice; /* told the user the file is missing */
    int64_t rotate_grace_us;
    unsigned width;
    struct con_roll *roll;
    struct con_links links;
    /* --metrics */
    struct evhttp_uri *metrics_uri;
    struct evhttp_connection *metrics_conn;
    struct event *metrics_ev;
    bool metrics_busy, metrics_failing;
    struct con_metrics metrics;
    int64_t metrics_at_us; /* when metrics was last filled, 0 never */
    bool status_shown;
    int exit_code;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------- output */

#define C_RESET  "\033[0m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_RED    "\033[31m"
#define C_MAG    "\033[35m"
#define C_CYAN   "\033[36m"
#define C_DIM    "\033[2m"
#define C_REV    "\033[7m"

static void clear_status(struct app *a)
{
    if (a->status_shown) {
        fputs("\r\033[K", stdout);
        a->status_shown = false;
    }
}

static void draw_status(struct app *a)
{
    if (!a->status)
        return;
    struct con_roll_snap snap;
    char line[256];
    con_roll_snapshot(a->roll, now_us(), &snap);
    bool fresh = a->metrics_at_us && now_us() - a->metrics_at_us < METRICS_STALE_US;
    /* The switch's own view of its links beats what the log told us. */
    con_status_line(&snap, fresh && a->metrics.links.n ? &a->metrics.links : &a->links,
                    fresh ? &a->metrics : NULL, a->width, line, sizeof line);
    fputs("\r\033[K", stdout);
    if (a->color)
        fprintf(stdout, C_REV "%s" C_RESET, line);
    else
        fputs(line, stdout);
    a->status_shown = true;
}

static void flush_out(struct app *a)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        /* The reader went away (| head, closed pane): nothing left to do. */
        a->exit_code = errno == EPIPE ? 0 : 1;
        event_base_loopbreak(a->base);
    }
}

static void emit(struct app *a, const char *color, const char *text)
{
    clear_status(a);
    if (a->color && color)
        fprintf(stdout, "%s%s" C_RESET "\n", color, text);
    else
        fprintf(stdout, "%s\n", text);
}

static void notice(struct app *a, const char *fmt, const char *arg)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, arg);
    emit(a, C_CYAN, msg);
}

static const char *color_of(const struct con_event *ev)
{
    if (ev->kind == CON_EV_TXN) {
        if (ev->stand_in) /* decided in the issuer's place: its own colour */
            return ev->outcome == CON_OUT_APPROVED ? C_CYAN : C_YELLOW;
        switch (ev->outcome) {
        case CON_OUT_APPROVED:
            return C_GREEN;
        case CON_OUT_DECLINED:
            return C_YELLOW;
        case CON_OUT_REJECTED:
            return C_MAG;
        default:
            return C_RED;
        }
    }
    if (ev->kind == CON_EV_LINK_STATE)
        return strcmp(ev->to, "up") == 0 ? C_GREEN : C_RED;
    if (ev->level >= CON_LVL_ERROR)
        return C_RED;
    if (ev->level == CON_LVL_WARN || ev->kind == CON_EV_TXN_REFUSED)
        return C_MAG;
    return C_DIM;
}

/* ---------------------------------------------------------------- lines */

/* One complete line (without '\n') of the followed log, which started at
 * file offset `at`. forced_err: the line is known bad (too long, cut). */
static void handle_line(struct app *a, const char *line, size_t len, off_t at,
                        const char *forced_err)
{
    struct con_event ev;
    char err[160], text[1024];
    if (len == 0 && !forced_err)
        return;
    if (forced_err || con_parse_line(line, len, &ev, err, sizeof err) != 0) {
        int64_t t = now_us();
        con_roll_add_error(a->roll, t);
        snprintf(text, sizeof text, "MALFORMED line at byte %lld (%zu bytes): %s, skipped",
                 (long long)at, len, forced_err ? forced_err : err);
        emit(a, C_RED, text);
        return;
    }
    con_links_update(&a->links, &ev);
    con_roll_add(a->roll, &ev);
    if (!con_filter_match(&a->filt, &ev))
        return;
    con_format_event(&ev, text, sizeof text);
    emit(a, color_of(&ev), text);
}

static void on_line(void *arg, const char *line, size_t len, int64_t off, const char *err)
{
    handle_line(arg, line, len, (off_t)off, err);
}

static void feed(struct app *a, struct con_lines *l, const char *p, size_t n, off_t off)
{
    con_lines_feed(l, p, n, (int64_t)off, on_line, a);
}

/* The file ended (rotation, truncation, end of input) in the middle of a line. */
static void flush_partial(struct app *a, struct con_lines *l, const char *why)
{
    con_lines_finish(l, why, on_line, a);
}

/* ---------------------------------------------------------------- follow */

static void src_close(struct source *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* copytruncate seen late: the file was emptied and refilled past our offset
 * between two polls, so its size says nothing. The start of the last line
 * we read (its timestamp has microseconds) must still be where it was; if it
 * is not, the file was rewritten. */
static bool unchanged_before(const struct source *s)
{
    char now[CON_HEAD_KEEP];
    const struct con_lines *l = &s->ln;
    if (l->head_len == 0)
        return true;
    ssize_t n = pread(s->fd, now, l->head_len, (off_t)l->head_off);
    return n != (ssize_t)l->head_len || memcmp(now, l->head, l->head_len) == 0;
}

/* Opens path; at_end: position after the last complete line. 0 or -1. */
static int src_open(struct app *a, bool at_end)
{
    struct stat st;
    int fd = open(a->path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    if (fstat(fd, &st) == -1) {
        close(fd);
        return -1;
    }
    struct source *s = &a->src;
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->off = 0;
    con_lines_reset(&s->ln);
    s->last_data_us = now_us();
    if (at_end && st.st_size > 0) {
        /* Start after the last '\n' so that no half line is shown. */
        char tail[4096];
        off_t end = st.st_size;
        while (end > 0) {
            off_t from = end > (off_t)sizeof tail ? end - (off_t)sizeof tail : 0;
            ssize_t n = pread(fd, tail, (size_t)(end - from), from);
            if (n <= 0)
                break;
            char *nl = memrchr(tail, '\n', (size_t)n);
            if (nl) {
                s->off = from + (nl - tail) + 1;
                break;
            }
            end = from;
        }
    }
    return 0;
}

/* Reads what is there in s, at most *budget bytes (decremented). Returns
 * bytes read, or -1 on a read error. */
static ssize_t src_read(struct app *a, struct source *s, size_t *budget)
{
    static char chunk[65536];
    ssize_t total = 0;
    while (*budget > 0) {
        size_t want = *budget < sizeof chunk ? *budget : sizeof chunk;
        ssize_t n = pread(s->fd, chunk, want, s->off);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        feed(a, &s->ln, chunk, (size_t)n, s->off);
        s->off += n;
        total += n;
        *budget -= (size_t)n;
    }
    if (total > 0)
        s->last_data_us = now_us();
    return total;
}

/* Reads lines already in the file before our start position, only to learn
 * the issuers' link states and the last ten seconds of traffic: the status
 * line is right from the first second. Bounded to the last PRIME_MAX_BYTES. */
static void prime(struct app *a)
{
    struct source *s = &a->src;
    off_t from = s->off > (off_t)PRIME_MAX_BYTES ? s->off - (off_t)PRIME_MAX_BYTES : 0;
    char cutoff[32];
    time_t t = (time_t)(now_us() / 1000000 - CON_ROLL_SECONDS);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(cutoff, sizeof cutoff, "%Y-%m-%dT%H:%M:%S", &tm);
    static char buf[CON_LINE_MAX + 65536];
    size_t have = 0;
    bool first = from > 0; /* the first line is probably cut */
    while (from < s->off) {
        size_t want = sizeof buf - have;
        if ((off_t)want > s->off - from)
            want = (size_t)(s->off - from);
        ssize_t n = pread(s->fd, buf + have, want, from);
        if (n <= 0)
            break;
        from += n;
        have += (size_t)n;
        char *p = buf, *end = buf + have, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            size_t len = (size_t)(nl - p);
            bool recent = len > 26 && strncmp(p + 7, cutoff, strlen(cutoff)) >= 0;
            struct con_event ev;
            char err[8];
            if (!first && (recent || memmem(p, len, "\"link_state\"", 12)) &&
                con_parse_line(p, len, &ev, err, sizeof err) == 0) {
                con_links_update(&a->links, &ev);
                if (recent)
                    con_roll_add(a->roll, &ev);
            }
            first = false;
            p = nl + 1;
        }
        have = (size_t)(end - p);
        if (have == sizeof buf) /* a line longer than the buffer: drop it */
            have = 0;
        memmove(buf, p, have);
    }
}

static void schedule(struct app *a, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(a->tick, &tv);
}

/* Done with the rotated file: a line left unfinished there is reported. */
static void close_old(struct app *a, const char *why)
{
    flush_partial(a, &a->old.ln, why);
    src_close(&a->old);
}

/* Reads what writers still append to the rotated file, until it has been
 * quiet for --rotate-grace. */
static void drain_old(struct app *a, size_t *budget)
{
    if (a->old.fd < 0)
        return;
    if (src_read(a, &a->old, budget) < 0 || now_us() - a->old.last_data_us > a->rotate_grace_us)
        close_old(a, "truncated line (file rotated)");
}

/* Starts again from the beginning of the same file (copytruncate). */
static void restart_truncated(struct app *a)
{
    struct source *s = &a->src;
    flush_partial(a, &s->ln, "truncated line (file truncated)");
    notice(a, "--- %s was truncated (copytruncate?): reading from its start ---", a->path);
    s->off = 0;
    s->ln.head_len = 0;
}

/* The end of a --no-follow run. */
static void finish_once(struct app *a)
{
    if (a->old.fd >= 0)
        close_old(a, "truncated line (file rotated)");
    flush_partial(a, &a->src.ln, "truncated line (end of file)");
    draw_status(a);
    flush_out(a);
    event_base_loopbreak(a->base);
}

/* One poll: check our file for truncation, read new bytes, then look at the
 * path for a rotation (a new file under the name). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    struct source *s = &a->src;
    size_t budget = READ_PER_TICK;
    struct stat st;

    if (s->fd < 0) {
        if (src_open(a, false) != 0) {
            if (!a->waiting_notice) {
                notice(a, "--- waiting for %s to appear ---", a->path);
                a->waiting_notice = true;
            }
            goto next;
        }
        if (a->waiting_notice)
            notice(a, "--- %s appeared, following it ---", a->path);
        a->waiting_notice = false;
    }
    /* Before reading: bytes past our offset in a truncated-and-refilled file
     * belong to the middle of some other line. */
    if (fstat(s->fd, &st) == 0 && (st.st_size < s->off || !unchanged_before(s)))
        restart_truncated(a);
    drain_old(a, &budget);
    if (src_read(a, s, &budget) < 0) {
        notice(a, "--- read error on %s, reopening ---", a->path);
        flush_partial(a, &s->ln, "truncated line (read error)");
        src_close(s);
        goto next;
    }
    if (budget == 0)
        goto next; /* more to read: come back at once */
    if (!a->follow) {
        finish_once(a);
        return;
    }
    if (stat(a->path, &st) == 0 && (st.st_dev != s->dev || st.st_ino != s->ino)) {
        /* A new file under the name. The writer may still append to the old
         * one until it reopens (switchd flushes before it does, so once the
         * new file has data the old one is complete). Until then, and while
         * the name is missing, we keep reading the old file. */
        if (st.st_size > 0 || now_us() - s->last_data_us > a->rotate_grace_us) {
            if (src_read(a, s, &budget) < 0 || budget == 0)
                goto next;
            /* Keep reading the old file a while: another process writing
             * the same log may not have reopened yet. */
            if (a->old.fd >= 0)
                close_old(a, "truncated line (file rotated)");
            a->old = *s;
            s->fd = -1;
            if (src_open(a, false) == 0) {
                notice(a, "--- %s was rotated: following the new file ---", a->path);
                if (src_read(a, s, &budget) < 0)
                    src_close(s);
            }
        }
    }
next:
    if (a->status && !a->status_shown)
        draw_status(a);
    flush_out(a);
    schedule(a, budget == 0 ? 0 : POLL_MS);
}

static void on_status(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    draw_status(a);
    flush_out(a);
}

/* ---------------------------------------------------------------- metrics */

/* One /metrics answer (req NULL on a connection error or timeout). */
static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct app *a = arg;
    const char *why = NULL;
    a->metrics_busy = false;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        why = "no answer";
    } else if (evhttp_request_get_response_code(req) != 200) {
        why = "HTTP error";
    } else {
        struct evbuffer *b = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(b);
        const char *body = n <= METRICS_MAX_BODY ? (const char *)evbuffer_pullup(b, -1) : NULL;
        struct con_metrics m;
        if (!body || con_metrics_parse(body, n, &m) != 0) {
            why = "not a switch's metrics";
        } else {
            a->metrics = m;
            a->metrics_at_us = now_us();
        }
    }
    /* Say it when it starts failing and when it is back, not every poll. */
    if (why && !a->metrics_failing)
        notice(a, "--- metrics: %s ---", why);
    if (!why && a->metrics_failing)
        notice(a, "--- metrics: %s ---", "reading again");
    a->metrics_failing = why != NULL;
    draw_status(a);
    flush_out(a);
}

static void poll_metrics(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    if (a->metrics_busy)
        return;
    if (!a->metrics_conn) {
        int port = evhttp_uri_get_port(a->metrics_uri);
        a->metrics_conn = evhttp_connection_base_new(
            a->base, NULL, evhttp_uri_get_host(a->metrics_uri), (uint16_t)(port > 0 ? port : 80));
        if (!a->metrics_conn)
            return;
        evhttp_connection_set_timeout(a->metrics_conn, 2);
    }
    struct evhttp_request *req = evhttp_request_new(on_metrics, a);
    if (!req)
        return;
    const char *path = evhttp_uri_get_path(a->metrics_uri);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
                      evhttp_uri_get_host(a->metrics_uri));
    if (evhttp_make_request(a->metrics_conn, req, EVHTTP_REQ_GET,
                            path && *path ? path : "/metrics") == 0)
        a->metrics_busy = true;
}

/* --metrics: http://HOST:PORT[/PATH] with a numeric or local host name
 * (resolved once, at connect). 0 or -1. */
static int set_metrics(struct app *a, const char *url)
{
    a->metrics_uri = evhttp_uri_parse(url);
    const char *scheme = a->metrics_uri ? evhttp_uri_get_scheme(a->metrics_uri) : NULL;
    if (!scheme || strcmp(scheme, "http") != 0 || !evhttp_uri_get_host(a->metrics_uri)) {
        fprintf(stderr, "atlas-console: --metrics wants http://HOST:PORT/metrics\n");
        return -1;
    }
    return 0;
}

static void update_width(struct app *a)
{
    struct winsize ws;
    a->width = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        a->width = ws.ws_col;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    if (sig == SIGWINCH) {
        update_width(a);
        draw_status(a);
        flush_out(a);
        return;
    }
    clear_status(a);
    if (a->color)
        fputs(C_RESET, stdout);
    fflush(stdout);
    event_base_loopbreak(a->base);
}

/* ---------------------------------------------------------------- options */

/* --since: absolute UTC time, "HH:MM[:SS]" today (UTC), or "N[smh]" ago. */
static int parse_since(const char *s, int64_t *us)
{
    char *end;
    if (con_parse_time(s, us) == 0)
        return 0;
    if (strlen(s) >= 5 && s[2] == ':') {
        char full[40];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        int n = snprintf(full, sizeof full, "%04d-%02d-%02dT%s%s", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, s, strlen(s) == 5 ? ":00" : "");
        return n > 0 && (size_t)n < sizeof full ? con_parse_time(full, us) : -1;
    }
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || v > 1000000 || end[0] == '\0' || end[1] != '\0')
        return -1;
    int64_t mul = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : 0;
    if (!mul)
        return -1;
    *us = now_us() - (int64_t)v * mul * 1000000;
    return 0;
}

static int set_str(char *dst, size_t cap, const char *v, const char *name)
{
    if (strlen(v) == 0 || strlen(v) >= cap) {
        fprintf(stderr, "atlas-console: %s: value must be 1..%zu characters\n", name, cap - 1);
        return -1;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int parse_opts(struct app *a, int argc, char **argv)
{
    enum {
        OPT_FROM = 256,
        OPT_NOFOLLOW,
        OPT_NOCOLOR,
        OPT_NOSTATUS,
        OPT_TXN,
        OPT_RC,
        OPT_TERM,
        OPT_ISS,
        OPT_MTI,
        OPT_PAN,
        OPT_LAT,
        OPT_SINCE,
        OPT_METRICS,
        OPT_GRACE
    };
    static const struct option lo[] = {
        { "from-start", no_argument, 0, OPT_FROM },
        { "no-follow", no_argument, 0, OPT_NOFOLLOW },
        { "no-color", no_argument, 0, OPT_NOCOLOR },
        { "no-status", no_argument, 0, OPT_NOSTATUS },
        { "txn-only", no_argument, 0, OPT_TXN },
        { "rc", required_argument, 0, OPT_RC },
        { "terminal", required_argument, 0, OPT_TERM },
        { "issuer", required_argument, 0, OPT_ISS },
        { "mti", required_argument, 0, OPT_MTI },
        { "pan-last4", required_argument, 0, OPT_PAN },
        { "min-latency", required_argument, 0, OPT_LAT },
        { "since", required_argument, 0, OPT_SINCE },
        { "metrics", required_argument, 0, OPT_METRICS },
        { "rotate-grace", required_argument, 0, OPT_GRACE },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    bool tty = isatty(STDOUT_FILENO) == 1;
    a->color = tty && getenv("NO_COLOR") == NULL;
    a->status = tty;
    a->follow = true;
    a->rotate_grace_us = ROTATE_QUIET_MS * 1000LL;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_FROM:
            a->from_start = true;
            break;
        case OPT_NOFOLLOW:
            a->follow = false;
            break;
        case OPT_NOCOLOR:
            a->color = false;
            break;
        case OPT_NOSTATUS:
            a->status = false;
            break;
        case OPT_TXN:
            a->filt.txn_only = true;
            break;
        case OPT_RC:
            rc = set_str(a->filt.rc, sizeof a->filt.rc, optarg, "--rc");
            break;
        case OPT_TERM:
            rc = set_str(a->filt.terminal, sizeof a->filt.terminal, optarg, "--terminal");
            break;
        case OPT_ISS:
            rc = set_str(a->filt.issuer, sizeof a->filt.issuer, optarg, "--issuer");
            break;
        case OPT_MTI:
            rc = set_str(a->filt.mti, sizeof a->filt.mti, optarg, "--mti");
            break;
        case OPT_PAN:
            if (strlen(optarg) != 4 || strspn(optarg, "0123456789") != 4) {
                fprintf(stderr, "atlas-console: --pan-last4 wants exactly 4 digits\n");
                rc = -1;
            } else {
                memcpy(a->filt.pan_last4, optarg, 5);
            }
            break;
        case OPT_LAT:
            if (con_parse_latency(optarg, &a->filt.min_lat_us) != 0) {
                fprintf(stderr, "atlas-console: --min-latency: not a duration: %s\n", optarg);
                rc = -1;
            }
            break;
        case OPT_SINCE:
            if (parse_since(optarg, &a->filt.since_us) != 0) {
                fprintf(stderr, "atlas-console: --since: not a time: %s\n", optarg);
                rc = -1;
            }
            break;
        case OPT_METRICS:
            rc = set_metrics(a, optarg);
            break;
        case OPT_GRACE: {
            char *end;
            unsigned long ms = strtoul(optarg, &end, 10);
            if (end == optarg || *end || ms > 3600000) {
                fprintf(stderr, "atlas-console: --rotate-grace: milliseconds, up to 3600000\n");
                rc = -1;
            }
            a->rotate_grace_us = (int64_t)ms * 1000;
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        default:
            rc = -1;
        }
        if (rc != 0)
            return -1;
    }
    if (optind + 1 != argc) {
        fputs(usage_text, stderr);
        return -1;
    }
    a->path = argv[optind];
    return 0;
}

/* ---------------------------------------------------------------- summary */

static void sum_line(void *arg, const char *p, size_t len, int64_t off, const char *err)
{
    struct con_summary *s = arg;
    struct con_event ev;
    char perr[8];
    if (len == 0 && !err)
        return;
    if (!err && con_parse_line(p, len, &ev, perr, sizeof perr) == 0)
        con_summary_add(s, &ev);
    else
        con_summary_add_malformed(s);
}

static int summary_main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) {
        fputs(usage_text, argc < 3 ? stderr : stdout);
        return argc < 3 ? 2 : 0;
    }
    struct con_summary *s = con_summary_new();
    static struct con_lines ln;
    static char chunk[65536];
    int rc = 0;
    if (!s) {
        fprintf(stderr, "atlas-console: out of memory\n");
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "atlas-console: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
            continue;
        }
        con_lines_reset(&ln);
        int64_t off = 0;
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
            con_lines_feed(&ln, chunk, n, off, sum_line, s);
            off += (int64_t)n;
        }
        if (ferror(f)) {
            fprintf(stderr, "atlas-console: %s: read error\n", argv[i]);
            rc = 1;
        }
        con_lines_finish(&ln, "truncated line (no final newline)", sum_line, s);
        fclose(f);
    }
    con_summary_print(s, stdout);
    con_summary_free(s);
    return rc;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "summary") == 0)
        return summary_main(argc, argv);

    static struct app app;
    struct app *a = &app;
    a->src.fd = -1;
    a->old.fd = -1;
    if (parse_opts(a, argc, argv) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    a->roll = malloc(sizeof *a->roll);
    a->base = event_base_new();
    if (!a->roll || !a->base) {
        fprintf(stderr, "atlas-console: out of memory\n");
        return 1;
    }
    con_roll_init(a->roll);
    update_width(a);

    if (src_open(a, !a->from_start) == 0) {
        if (!a->from_start)
            prime(a);
        notice(a,
               a->from_start ? "--- %s: from its start ---" : "--- %s: following from its end ---",
               a->path);
    } else if (errno != ENOENT || !a->follow) {
        fprintf(stderr, "atlas-console: %s: %s\n", a->path, strerror(errno));
        return 1;
    }

    a->tick = evtimer_new(a->base, on_tick, a);
    struct event *sigs[3] = {
        evsignal_new(a->base, SIGINT, on_signal, a),
        evsignal_new(a->base, SIGTERM, on_signal, a),
        evsignal_new(a->base, SIGWINCH, on_signal, a),
    };
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_add(sigs[i], NULL);
    if (a->status) {
        struct timeval tv = { STATUS_PERIOD_MS / 1000, (STATUS_PERIOD_MS % 1000) * 1000 };
        a->status_ev = event_new(a->base, -1, EV_PERSIST, on_status, a);
        event_add(a->status_ev, &tv);
    }
    if (a->metrics_uri) {
        struct timeval tv = { METRICS_PERIOD_MS / 1000, (METRICS_PERIOD_MS % 1000) * 1000 };
        a->metrics_ev = event_new(a->base, -1, EV_PERSIST, poll_metrics, a);
        event_add(a->metrics_ev, &tv);
        poll_metrics(-1, 0, a);
    }
    schedule(a, 0);
    event_base_dispatch(a->base);

    if (a->metrics_ev)
        event_free(a->metrics_ev);
    if (a->metrics_conn)
        evhttp_connection_free(a->metrics_conn);
    if (a->metrics_uri)
        evhttp_uri_free(a->metrics_uri);

    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (a->status_ev)
        event_free(a->status_ev);
    event_free(a->tick);
    event_base_free(a->base);
    src_close(&a->src);
    src_close(&a->old);
    free(a->roll);
    if (a->status) {
        clear_status(a);
        fflush(stdout);
    }
    return a->exit_code;
}
