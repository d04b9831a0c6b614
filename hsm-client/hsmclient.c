/* Async HSM client (hsm-sim or a payShield): a pool of bufferevent connections, each with a ring
 * of in-flight slots indexed by the 4-hex tag carried in the message header.
 * Requests live in a fixed pool (no malloc per request unless a command is
 * longer than the inline buffer); sends happen in a deferred "pump" event so
 * that no callback ever runs inside hsm_client_submit(), and the pump writes
 * what it queued on each connection in one syscall (at_bev_write_now). */
#include "hsmclient.h"

#include "clock.h"
#include "hex.h"
#include "log.h"
#include "parse.h"
#include "stream.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define REQ_INLINE 320 /* command bytes kept inside the request (CA, CI, EC... all fit) */
#define TAG_LEN    4

enum req_state {
    REQ_FREE,     /* on the free list */
    REQ_QUEUED,   /* waiting for a connection slot */
    REQ_INFLIGHT, /* written, waiting for its answer */
};

struct conn;

struct req {
    struct hsm_client *c;
    struct req *prev, *next; /* queue or free list */
    struct event timer;
    enum req_state state;
    hsm_client_cb cb;
    void *arg;
    struct conn *conn; /* REQ_INFLIGHT */
    uint64_t sent_ns;
    size_t len;
    char *data; /* inline or heap */
    char inline_buf[REQ_INLINE];
};

/* A slot of a connection's pipeline ring. A zombie is a request that timed
 * out: its answer may still come and must be recognised and dropped. */
struct slot {
    struct req *r;
    uint16_t tag;
    bool zombie;
};

struct conn {
    struct hsm_client *c;
    struct bufferevent *bev; /* NULL while down */
    struct event *retry;
    bool up;
    bool ever_up;
    bool unsent; /* the pump queued requests here that are not written yet */
    unsigned backoff_ms;
    uint32_t seq;
    unsigned used; /* slots taken (live + zombie) */
    uint64_t last_rx_ns;
    struct slot *slots;
};

struct hsm_client {
    struct event_base *base;
    struct hsm_client_config cfg;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct conn *conns;
    unsigned next_conn;
    struct req *pool;
    struct req *free_list;
    struct req *q_head, *q_tail;
    unsigned n_queued, n_inflight; /* live requests only */
    struct event *pump;
    bool busy, busy_reported;
    struct hsm_client_stats st;
    uint8_t *frame; /* scratch for one outgoing frame */
    unsigned in_cb; /* > 0 while a user callback runs (free is forbidden then) */
};

static void conn_connect(struct conn *k);
static void schedule_pump(struct hsm_client *c);

static unsigned outstanding(const struct hsm_client *c)
{
    return c->n_queued + c->n_inflight;
}

static struct req *req_get(struct hsm_client *c)
{
    struct req *r = c->free_list;
    if (r) {
        c->free_list = r->next;
        r->next = r->prev = NULL;
    }
    return r;
}

/* Commands may hold card secrets in clear (a CVV2 in CY): the client's own copies of a command
 * are wiped when done with, through a volatile pointer the compiler cannot drop as a dead store. */
static void *(*const volatile wipe_memset)(void *, int, size_t) = memset;

static void req_put(struct hsm_client *c, struct req *r)
{
    event_del(&r->timer);
    wipe_memset(r->data, 0, r->len);
    r->len = 0;
    if (r->data != r->inline_buf)
        free(r->data);
    r->data = r->inline_buf;
    r->state = REQ_FREE;
    r->cb = NULL;
    r->arg = NULL;
    r->conn = NULL;
    r->prev = NULL;
    r->next = c->free_list;
    c->free_list = r;
}

static void queue_unlink(struct hsm_client *c, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->q_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->q_tail = r->prev;
    r->prev = r->next = NULL;
    c->n_queued--;
}

/* Finishes a request: returns it to the pool first (so the callback may
 * submit again), then runs the callback. */
static void req_finish(struct hsm_client *c, struct req *r, int status, const char *resp,
                       size_t len)
{
    hsm_client_cb cb = r->cb;
    void *arg = r->arg;
    req_put(c, r);
    schedule_pump(c);
    if (cb) {
        c->in_cb++;
        cb(arg, status, resp, len);
        c->in_cb--;
    }
}

/* Takes a connection down: every request in flight on it fails with
 * HSM_CLIENT_DISCONNECTED, zombies are forgotten, and a reconnect is
 * scheduled with exponential backoff. */
static void conn_down(struct conn *k, const char *reason)
{
    struct hsm_client *c = k->c;
    at_log(k->up ? AT_LOG_WARN : AT_LOG_DEBUG, "hsm_conn_down",
           AT_UINT("conn", (unsigned)(k - c->conns)), AT_STR("reason", reason),
           AT_UINT("in_flight", k->used), AT_UINT("retry_ms", k->backoff_ms));
    unsigned p = c->cfg.pipeline;
    if (k->bev) {
        bufferevent_free(k->bev);
        k->bev = NULL;
    }
    k->unsent = false;
    if (k->up)
        c->st.connected--;
    k->up = false;
    /* Collect first: callbacks may submit, which must not see half-cleared slots. */
    struct req *failed = NULL;
    for (unsigned i = 0; i < p; i++) {
        struct slot *s = &k->slots[i];
        if (s->r) {
            s->r->next = failed;
            failed = s->r;
            c->n_inflight--;
            c->st.disconnects++;
        }
        s->r = NULL;
        s->zombie = false;
    }
    k->used = 0;
    struct timeval tv = { k->backoff_ms / 1000, (k->backoff_ms % 1000) * 1000 };
    event_add(k->retry, &tv);
    k->backoff_ms *= 2;
    if (k->backoff_ms > c->cfg.reconnect_max_ms)
        k->backoff_ms = c->cfg.reconnect_max_ms;
    while (failed) {
        struct req *r = failed;
        failed = r->next;
        r->next = NULL;
        req_finish(c, r, HSM_CLIENT_DISCONNECTED, NULL, 0);
    }
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *k = arg;
    struct hsm_client *c = k->c;
    struct evbuffer *in = bufferevent_get_input(bev);
    const unsigned hl = c->cfg.header_len;

    k->last_rx_ns = at_mono_ns();
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        uint8_t pfx[2];
        if (avail < 2 || evbuffer_copyout(in, pfx, 2) != 2)
            return;
        size_t len = (size_t)pfx[0] << 8 | pfx[1];
        if (len > c->cfg.max_frame || len < hl + 4) {
            conn_down(k, "bad answer length"); /* cannot resynchronise a stream */
            return;
        }
        if (avail < 2 + len)
            return;
        const char *f = (const char *)evbuffer_pullup(in, (ev_ssize_t)(2 + len)) + 2;
        int tag = 0;
        for (unsigned i = hl - TAG_LEN; i < hl; i++) {
            int v = at_hexval(f[i]);
            if (v < 0) {
                tag = -1;
                break;
            }
            tag = tag * 16 + v;
        }
        if (tag < 0) {
            conn_down(k, "answer header carries no tag");
            return;
        }
        struct slot *s = &k->slots[(unsigned)tag & (c->cfg.pipeline - 1)];
        struct req *r = NULL;
        if (s->tag == (uint16_t)tag && (s->r || s->zombie)) {
            r = s->r;
            s->r = NULL;
            s->zombie = false;
            k->used--;
        }
        if (r) {
            /* The answer body stays in the evbuffer until the callback returns. */
            c->n_inflight--;
            c->st.answered++;
            hsm_client_cb cb = r->cb;
            void *cbarg = r->arg;
            req_put(c, r);
            schedule_pump(c);
            c->in_cb++;
            cb(cbarg, HSM_CLIENT_OK, f + hl, len - hl);
            c->in_cb--;
            if (!k->bev)
                return; /* cannot happen (callbacks may not free), but stay safe */
        } else {
            schedule_pump(c); /* a zombie's slot was freed, or an unknown tag was dropped */
        }
        evbuffer_drain(in, 2 + len);
    }
}

/* libevent wrote the rest of what at_bev_write_now left: EV_WRITE goes off
 * again until a pump leaves output the kernel does not take. */
static void on_conn_write(struct bufferevent *bev, void *arg)
{
    /* A TLS bufferevent writes only while EV_WRITE is enabled: it stays on. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !at_tls_bev_is_tls(bev))
        bufferevent_disable(bev, EV_WRITE);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *k = arg;
    struct hsm_client *c = k->c;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        k->up = true;
        at_log(AT_LOG_INFO, "hsm_conn_up", AT_UINT("conn", (unsigned)(k - c->conns)));
        if (k->ever_up)
            c->st.reconnects++;
        k->ever_up = true;
        k->backoff_ms = c->cfg.reconnect_min_ms;
        k->last_rx_ns = at_mono_ns();
        c->st.connected++;
        schedule_pump(c);
        return;
    }
    if (c->cfg.tls && (what & BEV_EVENT_ERROR || !k->up)) {
        char why[160], label[48], reason[192];
        int err = (what & BEV_EVENT_ERROR) ? EVUTIL_SOCKET_ERROR() : 0;
        if (at_tls_failure(bev, err, why, sizeof why, label, sizeof label)) {
            /* Refused certificates are worth a line even while the link is down. */
            at_log(AT_LOG_WARN, "hsm_tls_failed", AT_UINT("conn", (unsigned)(k - c->conns)),
                   AT_STR("reason", why), AT_STR("label", label));
            snprintf(reason, sizeof reason, "tls: %s", why);
            conn_down(k, reason);
            return;
        }
    }
    if (what & BEV_EVENT_ERROR)
        conn_down(k, k->up ? "socket error" : "connect failed");
    else if (what & BEV_EVENT_EOF)
        conn_down(k, "closed by the HSM");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

static void conn_connect(struct conn *k)
{
    struct hsm_client *c = k->c;
    k->bev = c->cfg.tls ? at_tls_bev_new(c->cfg.tls, c->base, -1, NULL)
                        : bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!k->bev) {
        struct timeval tv = { 1, 0 };
        event_add(k->retry, &tv);
        return;
    }
    bufferevent_setcb(k->bev, on_conn_read, on_conn_write, on_conn_event, k);
    /* EV_WRITE only while output waits for the socket (on_pump); the
     * bufferevent watches the connect by itself. A TLS one keeps it enabled:
     * it handshakes, encrypts and writes by itself. */
    if (!c->cfg.tls)
        bufferevent_disable(k->bev, EV_WRITE);
    bufferevent_enable(k->bev, EV_READ);
    if (bufferevent_socket_connect(k->bev, (struct sockaddr *)&c->addr, (int)c->addrlen) != 0)
        conn_down(k, "connect failed"); /* immediate failure: retry later */
}

/* Writes one request on k: frame = length ‖ header (zeros + 4-hex tag) ‖ command. */
static void conn_send(struct conn *k, struct req *r)
{
    struct hsm_client *c = k->c;
    const unsigned hl = c->cfg.header_len;
    static const char digits[] = "0123456789ABCDEF";
    uint16_t tag = (uint16_t)k->seq;
    struct slot *s = &k->slots[tag & (c->cfg.pipeline - 1)];
    size_t body = hl + r->len;
    uint8_t *f = c->frame;

    f[0] = (uint8_t)(body >> 8);
    f[1] = (uint8_t)body;
    memset(f + 2, '0', hl - TAG_LEN);
    for (unsigned i = 0; i < TAG_LEN; i++)
        f[2 + hl - 1 - i] = (uint8_t)digits[(tag >> (4 * i)) & 15];
    memcpy(f + 2 + hl, r->data, r->len);
    bufferevent_write(k->bev, f, 2 + body); /* written by on_pump, after the batch */
    wipe_memset(f + 2 + hl, 0, r->len);
    k->unsent = true;

    k->seq++;
    k->used++;
    s->r = r;
    s->tag = tag;
    s->zombie = false;
    r->state = REQ_INFLIGHT;
    r->conn = k;
    r->sent_ns = at_mono_ns();
    c->n_inflight++;
}

/* True if k can take one more request now. */
static bool can_take(const struct hsm_client *c, const struct conn *k)
{
    if (!k->up || k->used >= c->cfg.pipeline)
        return false;
    const struct slot *s = &k->slots[k->seq & (c->cfg.pipeline - 1)];
    return !s->r && !s->zombie; /* the next slot may still be held by an old request */
}

/* A connection that can take one more request now, round-robin. */
static struct conn *pick_conn(struct hsm_client *c)
{
    unsigned n = c->cfg.connections;
    for (unsigned i = 0; i < n; i++) {
        struct conn *k = &c->conns[(c->next_conn + i) % n];
        if (!can_take(c, k))
            continue;
        c->next_conn = (c->next_conn + i + 1) % n;
        return k;
    }
    return NULL;
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    struct hsm_client *c = arg;
    (void)fd;
    (void)what;
    /* A turn's requests go to one connection while it has room, the next
     * turn's to the next connection: one writev out and, as the HSM answers
     * what it read together, one read back per turn, rather than one of each
     * per connection when requests alternate. Connections still share the
     * load across turns, and a full pipeline spills to the next one. */
    struct conn *cur = NULL;
    while (c->q_head) {
        if (!cur || !can_take(c, cur))
            cur = pick_conn(c);
        if (!cur)
            break;
        struct req *r = c->q_head;
        queue_unlink(c, r);
        conn_send(cur, r);
    }
    /* One writev per connection for everything queued above. A connection
     * that fails here goes down like one whose write failed in libevent. */
    for (unsigned i = 0; i < c->cfg.connections; i++) {
        struct conn *k = &c->conns[i];
        if (!k->unsent)
            continue;
        k->unsent = false;
        if (k->bev && at_bev_write_now(k->bev) == -1)
            conn_down(k, "socket error");
    }
    bool busy = hsm_client_busy(c);
    c->busy = busy;
    if (busy != c->busy_reported) {
        c->busy_reported = busy;
        if (c->cfg.busy_cb) {
            c->in_cb++;
            c->cfg.busy_cb(c->cfg.busy_arg, busy);
            c->in_cb--;
        }
    }
}

static void schedule_pump(struct hsm_client *c)
{
    event_active(c->pump, EV_TIMEOUT, 1); /* no-op if already active */
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    struct hsm_client *c = r->c;
    (void)fd;
    (void)what;
    c->st.timeouts++;
    if (r->state == REQ_QUEUED) {
        queue_unlink(c, r);
        req_finish(c, r, HSM_CLIENT_TIMEOUT, NULL, 0);
        return;
    }
    /* In flight: keep the slot as a zombie so a late answer is recognised. */
    struct conn *k = r->conn;
    struct slot *s = NULL;
    for (unsigned i = 0; i < c->cfg.pipeline; i++)
        if (k->slots[i].r == r) {
            s = &k->slots[i];
            break;
        }
    if (s) {
        s->r = NULL;
        s->zombie = true;
    }
    c->n_inflight--;
    bool stalled = k->last_rx_ns < r->sent_ns;
    hsm_client_cb cb = r->cb;
    void *cbarg = r->arg;
    req_put(c, r);
    schedule_pump(c);
    /* Nothing at all came back since this request went out: the HSM (or the
     * path to it) is stuck. Drop the connection and reconnect. */
    if (stalled && k->bev)
        conn_down(k, "no answer within the timeout (stalled)");
    c->in_cb++;
    cb(cbarg, HSM_CLIENT_TIMEOUT, NULL, 0);
    c->in_cb--;
}

static unsigned dflt(unsigned v, unsigned d)
{
    return v ? v : d;
}

struct hsm_client *hsm_client_new(struct event_base *base, const struct hsm_client_config *cfg,
                                  char *err, size_t errcap)
{
    struct hsm_client_config k = *cfg;
    const char *why = NULL;

    k.connections = dflt(k.connections, 2);
    k.header_len = dflt(k.header_len, 4);
    k.pipeline = dflt(k.pipeline, 64);
    k.queue_limit = dflt(k.queue_limit, 4096);
    k.high_watermark = dflt(k.high_watermark, k.queue_limit / 4 * 3);
    k.low_watermark = dflt(k.low_watermark, k.queue_limit / 4);
    k.timeout_ms = dflt(k.timeout_ms, 2000);
    k.reconnect_min_ms = dflt(k.reconnect_min_ms, 100);
    k.reconnect_max_ms = dflt(k.reconnect_max_ms, 5000);
    k.max_frame = dflt(k.max_frame, 8192);
    if (!k.address) {
        snprintf(err, errcap, "address missing");
        return NULL;
    }
    if (k.connections > 256 || k.header_len < TAG_LEN || k.header_len > 64 ||
        (k.pipeline & (k.pipeline - 1)) != 0 || k.pipeline > 4096 || k.queue_limit > 1000000 ||
        k.low_watermark > k.high_watermark || k.high_watermark > k.queue_limit ||
        k.max_frame > 65535 || k.max_frame < k.header_len + 4 ||
        k.reconnect_min_ms > k.reconnect_max_ms) {
        snprintf(err, errcap,
                 "bad hsm client configuration (connections <= 256, header_len 4..64, pipeline "
                 "a power of 2 <= 4096, low <= high <= queue_limit, max_frame <= 65535)");
        return NULL;
    }
    struct hsm_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    c->base = base;
    c->cfg = k;
    if (!at_parse_hostport(k.address, &c->addr, &c->addrlen, &why)) {
        snprintf(err, errcap, "hsm address %s: %s", k.address, why ? why : "invalid");
        free(c);
        return NULL;
    }
    c->cfg.address = NULL; /* not kept: the caller's string may go away */
    c->conns = calloc(k.connections, sizeof *c->conns);
    c->pool = calloc(k.queue_limit, sizeof *c->pool);
    c->frame = malloc(2 + (size_t)k.max_frame);
    c->pump = event_new(base, -1, 0, on_pump, c);
    if (!c->conns || !c->pool || !c->frame || !c->pump) {
        snprintf(err, errcap, "out of memory");
        hsm_client_free(c);
        return NULL;
    }
    for (unsigned i = k.queue_limit; i-- > 0;) {
        struct req *r = &c->pool[i];
        r->c = c;
        r->data = r->inline_buf;
        event_assign(&r->timer, base, -1, 0, on_req_timeout, r);
        r->next = c->free_list;
        c->free_list = r;
    }
    for (unsigned i = 0; i < k.connections; i++) {
        struct conn *kc = &c->conns[i];
        kc->c = c;
        kc->backoff_ms = k.reconnect_min_ms;
        kc->slots = calloc(k.pipeline, sizeof *kc->slots);
        kc->retry = event_new(base, -1, 0, on_retry, kc);
        if (!kc->slots || !kc->retry) {
            snprintf(err, errcap, "out of memory");
            hsm_client_free(c);
            return NULL;
        }
    }
    for (unsigned i = 0; i < k.connections; i++)
        conn_connect(&c->conns[i]);
    return c;
}

void hsm_client_free(struct hsm_client *c)
{
    if (!c)
        return;
    assert(c->in_cb == 0 && "hsm_client_free() called from a client callback");
    /* Collect every live request, tear the connections down, then notify. */
    struct req *pending = NULL;
    if (c->conns) {
        for (unsigned i = 0; i < c->cfg.connections; i++) {
            struct conn *k = &c->conns[i];
            for (unsigned j = 0; k->slots && j < c->cfg.pipeline; j++)
                if (k->slots[j].r) {
                    k->slots[j].r->next = pending;
                    pending = k->slots[j].r;
                }
            if (k->bev)
                bufferevent_free(k->bev);
            if (k->retry)
                event_free(k->retry);
            free(k->slots);
        }
    }
    while (c->q_head) {
        struct req *r = c->q_head;
        queue_unlink(c, r);
        r->next = pending;
        pending = r;
    }
    while (pending) {
        struct req *r = pending;
        pending = r->next;
        event_del(&r->timer);
        if (r->cb)
            r->cb(r->arg, HSM_CLIENT_SHUTDOWN, NULL, 0);
        if (r->data != r->inline_buf)
            free(r->data);
    }
    if (c->pool)
        for (unsigned i = 0; i < c->cfg.queue_limit; i++)
            event_del(&c->pool[i].timer);
    if (c->pump)
        event_free(c->pump);
    free(c->conns);
    free(c->pool);
    free(c->frame);
    free(c);
}

int hsm_client_submit(struct hsm_client *c, const char *cmd, size_t len, hsm_client_cb cb,
                      void *arg)
{
    if (len < 2 || !cb || len + c->cfg.header_len > c->cfg.max_frame)
        return HSM_CLIENT_EINVAL;
    if (outstanding(c) >= c->cfg.queue_limit)
        return HSM_CLIENT_EFULL;
    struct req *r = req_get(c);
    if (!r)
        return HSM_CLIENT_EFULL;
    if (len > sizeof r->inline_buf) {
        r->data = malloc(len); /* rare: big M6/M8 messages */
        if (!r->data) {
            r->data = r->inline_buf;
            req_put(c, r);
            return HSM_CLIENT_EFULL;
        }
    }
    memcpy(r->data, cmd, len);
    r->len = len;
    r->cb = cb;
    r->arg = arg;
    r->state = REQ_QUEUED;
    r->prev = c->q_tail;
    r->next = NULL;
    if (c->q_tail)
        c->q_tail->next = r;
    else
        c->q_head = r;
    c->q_tail = r;
    c->n_queued++;
    c->st.submitted++;
    struct timeval tv = { c->cfg.timeout_ms / 1000, (c->cfg.timeout_ms % 1000) * 1000 };
    event_add(&r->timer, &tv);
    schedule_pump(c);
    return 0;
}

bool hsm_client_busy(const struct hsm_client *c)
{
    unsigned n = outstanding(c);
    if (n >= c->cfg.high_watermark)
        return true;
    if (n <= c->cfg.low_watermark)
        return false;
    return c->busy;
}

void hsm_client_get_stats(const struct hsm_client *c, struct hsm_client_stats *st)
{
    *st = c->st;
    st->queued = c->n_queued;
    st->in_flight = c->n_inflight;
}
