/* The journal's outage spool: its file format, the writer that appends and fsyncs groups of
 * records on an I/O thread, and the replay file's reading and retirement.
 *
 * Format: an 8-byte magic, then frames of [u32 length][u32 CRC-32C][payload], little-endian. A
 * frame cut by a crash (torn tail) is ignored — it was never acknowledged; a CRC mismatch is
 * corruption.
 *
 * Files: records go to the live spool <path>; to replay it, the journal has it renamed to
 * <path>.replay between two sync groups (new records then start a fresh live file) and reads it
 * in chunks. Records PostgreSQL refuses on replay are kept in <path>.rejected; a corrupt replay
 * file is kept as <path>.replay.corrupt.<time>. */
#include "db_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* 2 appended issuer_transmission_time; 3 the record kind, settle_inflight, the sealed PAN and the
 * reversal reason (records of versions 1 and 2 decode as ANSWERs); 4 the conversion (DE 6, 10,
 * 51; older records decode as not converted). */
#define SPOOL_VERSION 4

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. */
uint32_t spool_crc32c(const void *data, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    while (n--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
};

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
    if (w->n + n > w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void w_u64(struct wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, 8);
}

/* A string field: u8 length + bytes, bounded by the field's size in the record. */
static void w_str(struct wbuf *w, const char *s, size_t field_size)
{
    size_t n = strnlen(s, field_size - 1);
    uint8_t len = (uint8_t)n;
    w_bytes(w, &len, 1);
    w_bytes(w, s, n);
}

struct rbuf {
    const uint8_t *p;
    size_t n, off;
    bool bad;
};

static void r_bytes(struct rbuf *r, void *dst, size_t n)
{
    if (r->off + n > r->n) {
        r->bad = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->off, n);
    r->off += n;
}

static uint64_t r_u64(struct rbuf *r)
{
    uint8_t b[8];
    r_bytes(r, b, 8);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void r_str(struct rbuf *r, char *dst, size_t field_size)
{
    uint8_t len = 0;
    r_bytes(r, &len, 1);
    if (len >= field_size) {
        r->bad = true;
        dst[0] = '\0';
        return;
    }
    r_bytes(r, dst, len);
    dst[len] = '\0';
    if (memchr(dst, '\0', len))
        r->bad = true;
}

/* The field order of payload version 1. Adding a field means a new version number. */
#define SPOOL_STRINGS(X)                                                                           \
    X(request_date)                                                                                \
    X(acquirer_id)                                                                                 \
    X(terminal_id)                                                                                 \
    X(stan)                                                                                        \
    X(transmission_time)                                                                           \
    X(mti)                                                                                         \
    X(rrn)                                                                                         \
    X(issuer_id)                                                                                   \
    X(issuer_stan)                                                                                 \
    X(processing_code)                                                                             \
    X(response_code)                                                                               \
    X(auth_code)                                                                                   \
    X(pan_masked)                                                                                  \
    X(original_stan)                                                                               \
    X(original_transmission_time)

size_t spool_encode(const struct db_auth_record *rec, uint8_t *buf, size_t cap)
{
    struct wbuf w = { .p = buf, .cap = cap };
    uint8_t v = SPOOL_VERSION;
    w_bytes(&w, &v, 1);
#define W_STR(f) w_str(&w, rec->f, sizeof rec->f);
    SPOOL_STRINGS(W_STR)
#undef W_STR
    w_u64(&w, (uint64_t)rec->amount_minor);
    w_u64(&w, (uint64_t)(int64_t)rec->currency);
    w_u64(&w, (uint64_t)rec->outcome);
    uint8_t has = rec->has_pan_hmac ? 1 : 0;
    w_bytes(&w, &has, 1);
    if (has)
        w_bytes(&w, rec->pan_hmac, sizeof rec->pan_hmac);
    w_u64(&w, rec->created_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_total_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_mac_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_pin_us);
    w_u64(&w, (uint64_t)(int64_t)rec->lat_issuer_us);
    w_str(&w, rec->issuer_transmission_time, sizeof rec->issuer_transmission_time);
    uint8_t b[3] = { (uint8_t)rec->kind, rec->settle_inflight ? 1 : 0,
                     rec->pan_sealed_len <= DB_PAN_SEALED_MAX ? rec->pan_sealed_len : 0 };
    w_bytes(&w, b, 3);
    w_bytes(&w, rec->pan_sealed, b[2]);
    w_str(&w, rec->reason, sizeof rec->reason);
    w_u64(&w, (uint64_t)rec->billing.amount_minor);
    w_str(&w, rec->billing.rate, sizeof rec->billing.rate);
    w_u64(&w, (uint64_t)(int64_t)rec->billing.currency);
    return w.overflow ? 0 : w.n;
}

int spool_decode(const uint8_t *buf, size_t n, struct db_auth_record *rec)
{
    struct rbuf r = { .p = buf, .n = n };
    uint8_t v = 0;
    db_auth_record_init(rec);
    r_bytes(&r, &v, 1);
    if (v < 1 || v > SPOOL_VERSION)
        return -1;
#define R_STR(f) r_str(&r, rec->f, sizeof rec->f);
    SPOOL_STRINGS(R_STR)
#undef R_STR
    rec->amount_minor = (int64_t)r_u64(&r);
    rec->currency = (int32_t)(int64_t)r_u64(&r);
    uint64_t outcome = r_u64(&r);
    if (outcome >= DB_OUTCOME_max)
        return -1;
    rec->outcome = (enum db_outcome)outcome;
    uint8_t has = 0;
    r_bytes(&r, &has, 1);
    if (has > 1)
        return -1;
    rec->has_pan_hmac = has;
    if (has)
        r_bytes(&r, rec->pan_hmac, sizeof rec->pan_hmac);
    rec->created_us = r_u64(&r);
    rec->lat_total_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_mac_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_pin_us = (int32_t)(int64_t)r_u64(&r);
    rec->lat_issuer_us = (int32_t)(int64_t)r_u64(&r);
    if (v >= 2)
        r_str(&r, rec->issuer_transmission_time, sizeof rec->issuer_transmission_time);
    if (v >= 3) {
        uint8_t b[3] = { 0, 0, 0 };
        r_bytes(&r, b, 3);
        if (b[0] >= DB_REC_max || b[1] > 1 || b[2] > DB_PAN_SEALED_MAX)
            return -1;
        rec->kind = (enum db_rec_kind)b[0];
        rec->settle_inflight = b[1];
        rec->pan_sealed_len = b[2];
        r_bytes(&r, rec->pan_sealed, b[2]);
        r_str(&r, rec->reason, sizeof rec->reason);
    }
    if (v >= 4) {
        rec->billing.amount_minor = (int64_t)r_u64(&r);
        r_str(&r, rec->billing.rate, sizeof rec->billing.rate);
        rec->billing.currency = (int32_t)(int64_t)r_u64(&r);
    }
    if (r.bad || r.off != n)
        return -1;
    return 0;
}

size_t spool_frame(const struct db_auth_record *rec, uint8_t *out, size_t cap)
{
    if (cap < SPOOL_FRAME_HDR)
        return 0;
    size_t n = spool_encode(rec, out + SPOOL_FRAME_HDR, cap - SPOOL_FRAME_HDR);
    if (n == 0)
        return 0;
    put_u32(out, (uint32_t)n);
    put_u32(out + 4, spool_crc32c(out + SPOOL_FRAME_HDR, n));
    return SPOOL_FRAME_HDR + n;
}

int spool_reader_open(struct spool_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f)
        return errno == ENOENT ? 1 : -1;
    char magic[SPOOL_MAGIC_LEN];
    size_t got = fread(magic, 1, sizeof magic, r->f);
    if (got == 0 && feof(r->f)) { /* created but the magic never written: empty */
        r->offset = 0;
        return 0;
    }
    if (got != sizeof magic || memcmp(magic, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0) {
        fclose(r->f);
        r->f = NULL;
        return -1;
    }
    r->offset = SPOOL_MAGIC_LEN;
    return 0;
}

enum spool_read_status spool_reader_next(struct spool_reader *r, struct db_auth_record *rec)
{
    uint8_t hdr[SPOOL_FRAME_HDR];
    uint8_t payload[SPOOL_MAX_RECORD];
    size_t got = fread(hdr, 1, sizeof hdr, r->f);
    if (got == 0)
        return SPOOL_READ_END;
    if (got < sizeof hdr)
        return SPOOL_READ_TORN;
    uint32_t len = get_u32(hdr), crc = get_u32(hdr + 4);
    if (len == 0 || len > SPOOL_MAX_RECORD) {
        /* An impossible length: a torn header of zeros at the very end, or corruption. */
        uint8_t probe;
        if (len == 0 && fread(&probe, 1, 1, r->f) == 0)
            return SPOOL_READ_TORN;
        return SPOOL_READ_CORRUPT;
    }
    got = fread(payload, 1, len, r->f);
    if (got < len)
        return SPOOL_READ_TORN;
    if (spool_crc32c(payload, len) != crc) {
        /* A mismatch in the very last frame is a write cut short (pages not all on disk). */
        uint8_t probe;
        if (fread(&probe, 1, 1, r->f) == 0)
            return SPOOL_READ_TORN;
        return SPOOL_READ_CORRUPT;
    }
    if (spool_decode(payload, len, rec) != 0)
        return SPOOL_READ_CORRUPT;
    r->offset += SPOOL_FRAME_HDR + len;
    return SPOOL_READ_OK;
}

void spool_reader_close(struct spool_reader *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
}

/* ---- the writer ------------------------------------------------------------------------- */

#define SPOOL_BUF0 (64 * 1024) /* initial buffer; grows with the records waiting */

/* The loop appends frames to `fill` (tags in fill_tags); a sync hands them over as `sbuf` (tags
 * in sync_tags) to the worker thread, which writes and fdatasyncs them and then pokes the loop
 * through a pipe. One sync at a time; records arriving meanwhile form the next group. The worker
 * touches only fd, trunc_to, fresh, sbuf, sbuf_n and the w_ fields, and only between a handover
 * and its notification. */
struct spool_writer {
    struct spool_writer_opts o;
    char *path;
    int fd;
    off_t trunc_to; /* >= 0: a failed write left a fragment; cut back to this size first */
    bool has_data;  /* the live file holds records */
    bool fresh;     /* the live file was just created: the sync writes its magic first */
    uint8_t *fill, *sbuf;
    size_t fill_n, fill_cap, sbuf_n, sbuf_cap;
    uint32_t *fill_tags, *sync_tags;
    unsigned fill_tags_n, sync_tags_n;
    bool syncing;
    struct event *timer;
    pthread_t worker;
    bool worker_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool w_job, w_stop, w_done; /* guarded by mu */
    int w_errno;
    int notify[2];
    struct event *notify_ev;
};

static int fsync_dir_of(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Opens (creating) the live file. A new file needs its magic and a directory fsync: done here at
 * once when sync_now (start-up, before the loop runs), else by the next sync on the worker. */
static int open_live(struct spool_writer *w, bool sync_now)
{
    if (w->fd != -1)
        return 0;
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (w->fd == -1)
        return -1;
    struct stat sb;
    if (fstat(w->fd, &sb) == -1)
        return -1;
    w->fresh = sb.st_size == 0;
    if (w->fresh && sync_now) {
        if (write(w->fd, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != SPOOL_MAGIC_LEN)
            return -1;
        if (fdatasync(w->fd) == -1 || fsync_dir_of(w->path) == -1)
            return -1;
        w->fresh = false;
    }
    return 0;
}

/* Writes sbuf (after the magic, for a new file) and fdatasyncs; 0 or an errno. A write cut short
 * (ENOSPC, EIO, EFBIG) must not leave a fragment in front of the next group: the reader stops at
 * the first bad frame, so every record fsync'd after it would never be replayed. The file is cut
 * back to its size before this group; while that fails, nothing more is written. */
static int write_sync(struct spool_writer *w)
{
    if (w->trunc_to >= 0) {
        if (ftruncate(w->fd, w->trunc_to) == -1 || fdatasync(w->fd) == -1)
            return errno ? errno : EIO;
        w->trunc_to = -1;
    }
    off_t before = lseek(w->fd, 0, SEEK_END);
    if (before == -1)
        return errno ? errno : EIO;
    int err = 0;
    if (w->fresh && write_all(w->fd, (const uint8_t *)SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0)
        err = errno ? errno : EIO;
    if (!err && (write_all(w->fd, w->sbuf, w->sbuf_n) != 0 || fdatasync(w->fd) == -1))
        err = errno ? errno : EIO;
    if (!err && w->fresh && fsync_dir_of(w->path) == -1)
        err = errno ? errno : EIO;
    if (err) {
        if (ftruncate(w->fd, before) == -1 || fdatasync(w->fd) == -1)
            w->trunc_to = before;
        return err;
    }
    w->fresh = false;
    return 0;
}

static void *worker_main(void *arg)
{
    struct spool_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->w_job && !w->w_stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->w_job)
            break;
        pthread_mutex_unlock(&w->mu);
        int err = write_sync(w);
        pthread_mutex_lock(&w->mu);
        w->w_job = false;
        w->w_done = true;
        w->w_errno = err;
        pthread_mutex_unlock(&w->mu);
        char one = 1;
        ssize_t n;
        do
            n = write(w->notify[1], &one, 1);
        while (n == -1 && errno == EINTR);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Moves what was appended into the sync buffer (the buffers and tag arrays swap). */
static void take_fill(struct spool_writer *w)
{
    uint8_t *b = w->sbuf;
    size_t cap = w->sbuf_cap;
    w->sbuf = w->fill;
    w->sbuf_cap = w->fill_cap;
    w->sbuf_n = w->fill_n;
    w->fill = b;
    w->fill_cap = cap;
    w->fill_n = 0;
    uint32_t *q = w->sync_tags;
    w->sync_tags = w->fill_tags;
    w->sync_tags_n = w->fill_tags_n;
    w->fill_tags = q;
    w->fill_tags_n = 0;
}

/* Reports the group in sync_tags: err 0 when it is durable. */
static void report(struct spool_writer *w, int err)
{
    if (err)
        at_log(AT_LOG_ERROR, "journal_spool_failed", AT_STR("path", w->path),
               AT_STR("error", strerror(err)), AT_UINT("records", w->sync_tags_n));
    else
        w->has_data = true;
    /* On failure, what reached the file may still be replayed (harmless): the owner tells its
     * callers that it is not durable. */
    unsigned n = w->sync_tags_n;
    w->sync_tags_n = 0;
    w->o.on_synced(w->o.arg, w->sync_tags, n, err);
}

void spool_writer_kick(struct spool_writer *w)
{
    if (w->syncing || w->fill_tags_n == 0)
        return;
    if (open_live(w, false) != 0) {
        int err = errno ? errno : EIO;
        w->fill_n = 0;
        take_fill(w);
        report(w, err); /* the caller must not answer as if they were durable */
        return;
    }
    take_fill(w);
    w->syncing = true;
    pthread_mutex_lock(&w->mu);
    w->w_job = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The worker finished a sync: report its group, then start the next one at once if records
 * arrived meanwhile. The owner may hand the live file over from its callback (between groups). */
static void sync_done(struct spool_writer *w)
{
    pthread_mutex_lock(&w->mu);
    bool done = w->w_done;
    int err = w->w_errno;
    w->w_done = false;
    pthread_mutex_unlock(&w->mu);
    if (!done)
        return;
    w->syncing = false;
    report(w, err);
    spool_writer_kick(w);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    sync_done(arg);
}

static void on_sync_timer(evutil_socket_t fd, short what, void *arg)
{
    spool_writer_kick(arg);
}

int spool_writer_open(const struct spool_writer_opts *o, struct spool_writer **out)
{
    struct spool_writer *w = calloc(1, sizeof *w);
    if (!w)
        return DB_E_SYS;
    w->o = *o;
    w->fd = -1;
    w->trunc_to = -1;
    w->notify[0] = w->notify[1] = -1;
    w->path = strdup(o->path);
    w->fill_cap = w->sbuf_cap = SPOOL_BUF0;
    w->fill = malloc(w->fill_cap);
    w->sbuf = malloc(w->sbuf_cap);
    w->fill_tags = calloc(o->max_records, sizeof *w->fill_tags);
    w->sync_tags = calloc(o->max_records, sizeof *w->sync_tags);
    w->timer = evtimer_new(o->base, on_sync_timer, w);
    if (!w->path || !w->fill || !w->sbuf || !w->fill_tags || !w->sync_tags || !w->timer) {
        spool_writer_close(w);
        return DB_E_SYS;
    }
    /* A spool left by an earlier process holds records to replay. */
    struct stat sb;
    if (stat(w->path, &sb) == 0)
        w->has_data = sb.st_size > SPOOL_MAGIC_LEN;
    else if (errno != ENOENT) {
        spool_writer_close(w);
        return DB_E_SPOOL;
    }
    /* The spool must be writable before anything is promised. */
    if (open_live(w, true) != 0) {
        at_log(AT_LOG_ERROR, "journal_spool_failed", AT_STR("path", w->path),
               AT_STR("error", strerror(errno)));
        spool_writer_close(w);
        return DB_E_SPOOL;
    }
    if (pipe2(w->notify, O_NONBLOCK | O_CLOEXEC) == -1 ||
        !(w->notify_ev = event_new(o->base, w->notify[0], EV_READ | EV_PERSIST, on_notify, w)) ||
        event_add(w->notify_ev, NULL) != 0 || pthread_mutex_init(&w->mu, NULL) != 0 ||
        pthread_cond_init(&w->cv, NULL) != 0 ||
        pthread_create(&w->worker, NULL, worker_main, w) != 0) {
        spool_writer_close(w);
        return DB_E_SYS;
    }
    w->worker_started = true;
    *out = w;
    return 0;
}

int spool_writer_append(struct spool_writer *w, const struct db_auth_record *rec, uint32_t tag,
                        bool now)
{
    if (w->fill_n + SPOOL_FRAME_HDR + SPOOL_MAX_RECORD > w->fill_cap) {
        uint8_t *p = realloc(w->fill, w->fill_cap * 2);
        if (!p) {
            at_log(AT_LOG_ERROR, "journal_spool_failed", AT_STR("error", "out of memory"));
            return -1;
        }
        w->fill = p;
        w->fill_cap *= 2;
    }
    w->fill_n += spool_frame(rec, w->fill + w->fill_n, w->fill_cap - w->fill_n);
    w->fill_tags[w->fill_tags_n++] = tag;
    if (now) {
        spool_writer_kick(w);
    } else if (!w->syncing && !evtimer_pending(w->timer, NULL)) {
        struct timeval tv = { .tv_sec = w->o.sync_us / 1000000, .tv_usec = w->o.sync_us % 1000000 };
        evtimer_add(w->timer, &tv);
    }
    return 0;
}

bool spool_writer_busy(const struct spool_writer *w)
{
    return w->fill_tags_n > 0 || w->syncing;
}

bool spool_writer_has_data(const struct spool_writer *w)
{
    return w->has_data;
}

int spool_writer_handover(struct spool_writer *w, const char *to)
{
    /* Records appended but not yet handed to the worker go to the next live file; a group being
     * written must finish in this one first. */
    if (!w->has_data || w->syncing)
        return 1;
    if (w->fd != -1) {
        close(w->fd);
        w->fd = -1;
    }
    w->trunc_to = -1; /* a fragment at the very end is a torn tail: ignored */
    if (rename(w->path, to) == -1 || fsync_dir_of(w->path) == -1) {
        at_log(AT_LOG_ERROR, "journal_spool_rename_failed", AT_STR("path", w->path),
               AT_STR("error", strerror(errno)));
        return -1;
    }
    w->has_data = false;
    return 0;
}

/* Stops the worker (after its current sync), then syncs what is left on the calling thread:
 * blocking is acceptable when the writer goes away. An empty live file (magic only) is removed
 * so that a clean stop leaves nothing behind. */
void spool_writer_close(struct spool_writer *w)
{
    if (!w)
        return;
    if (w->worker_started) {
        pthread_mutex_lock(&w->mu);
        w->w_stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->worker, NULL);
        w->worker_started = false;
        sync_done(w); /* reports the last group; its kick may queue a next one for no worker */
        w->syncing = false;
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    /* What is left is synced here: a group queued for the stopped worker, then what was
     * appended (callbacks may append while the owner closes). */
    while (w->sync_tags_n > 0 || w->fill_tags_n > 0) {
        if (w->sync_tags_n == 0)
            take_fill(w);
        report(w, open_live(w, false) != 0 ? (errno ? errno : EIO) : write_sync(w));
    }
    if (w->fd != -1)
        close(w->fd);
    struct stat sb;
    if (w->path && !w->has_data && stat(w->path, &sb) == 0 && sb.st_size <= SPOOL_MAGIC_LEN)
        unlink(w->path);
    if (w->timer)
        event_free(w->timer);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->notify[0] != -1) {
        close(w->notify[0]);
        close(w->notify[1]);
    }
    free(w->fill);
    free(w->sbuf);
    free(w->fill_tags);
    free(w->sync_tags);
    free(w->path);
    free(w);
}

/* ---- the replay file ---------------------------------------------------------------------- */

int spool_replay_open(struct spool_replay *r)
{
    int rc = spool_reader_open(&r->rd, r->path);
    r->eof = false;
    r->corrupt = rc < 0;
    r->total = 0;
    if (rc < 0)
        at_log(AT_LOG_ERROR, "journal_spool_unreadable", AT_STR("path", r->path));
    else if (rc == 0)
        at_log(AT_LOG_INFO, "journal_spool_replay_start", AT_STR("path", r->path));
    return rc;
}

unsigned spool_replay_fill(struct spool_replay *r, struct db_auth_record *recs, unsigned cap)
{
    unsigned n = 0;
    while (!r->eof && n < cap) {
        enum spool_read_status s = spool_reader_next(&r->rd, &recs[n]);
        if (s == SPOOL_READ_OK) {
            n++;
            continue;
        }
        if (s == SPOOL_READ_TORN)
            at_log(AT_LOG_WARN, "journal_spool_torn_tail", AT_STR("path", r->path),
                   AT_UINT("offset", r->rd.offset));
        if (s == SPOOL_READ_CORRUPT) {
            at_log(AT_LOG_ERROR, "journal_spool_bad_frame", AT_STR("path", r->path),
                   AT_UINT("offset", r->rd.offset));
            r->corrupt = true;
        }
        r->eof = true;
    }
    return n;
}

void spool_replay_finish(struct spool_replay *r)
{
    spool_reader_close(&r->rd);
    if (r->corrupt) {
        char dst[4200];
        snprintf(dst, sizeof dst, "%s.corrupt.%lld", r->path, (long long)time(NULL));
        if (rename(r->path, dst) == -1)
            at_log(AT_LOG_ERROR, "journal_spool_rename_failed", AT_STR("path", r->path));
        at_log(AT_LOG_ERROR, "journal_spool_corrupt", AT_STR("kept_as", dst),
               AT_UINT("replayed", r->total));
    } else if (unlink(r->path) == -1 && errno != ENOENT) {
        at_log(AT_LOG_ERROR, "journal_spool_unlink_failed", AT_STR("path", r->path),
               AT_STR("error", strerror(errno)));
    } else {
        at_log(AT_LOG_INFO, "journal_spool_replayed", AT_UINT("records", r->total));
    }
    r->total = 0;
}

bool spool_replay_reject(struct spool_replay *r, const struct db_auth_record *recs, unsigned n)
{
    int fd = open(r->rejected_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    uint8_t frame[SPOOL_FRAME_HDR + SPOOL_MAX_RECORD];
    bool ok = fd != -1;
    struct stat sb;
    if (ok && fstat(fd, &sb) == 0 && sb.st_size == 0)
        ok = write(fd, SPOOL_MAGIC, SPOOL_MAGIC_LEN) == SPOOL_MAGIC_LEN;
    for (unsigned i = 0; ok && i < n; i++) {
        size_t len = spool_frame(&recs[i], frame, sizeof frame);
        ok = write(fd, frame, len) == (ssize_t)len;
    }
    if (ok)
        ok = fdatasync(fd) == 0;
    if (fd != -1)
        close(fd);
    if (!ok) {
        r->corrupt = true; /* keep the whole file instead */
        r->eof = true;
    }
    return ok;
}
