/* The sending core: one libevent loop, any number of connections (at_stream), requests
 * pipelined on each and matched to their responses by connection + DE 11 + MTI class
 * (+ DE 41 when the response carries it), a timer per request, latency on the
 * monotonic clock. Every slot, its buffer and its timer are allocated when the engine
 * is created; sending, matching and completing allocate nothing. `send`, `run` and the
 * load harness all drive it. */
#include "acquirer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "isonet.h"
#include "stream.h"
#include "tls.h"

#include <arpa/inet.h>

struct sim_req {
    uint8_t buf[SIM_MSG_MAX];
    struct sim_engine *e;
    struct sim_conn *conn;
    struct sim_term *term;
    struct sim_req *next_free;     /* engine free list */
    struct sim_req *hnext;         /* match-table bucket chain */
    struct sim_req *cprev, *cnext; /* the connection's in-flight list */
    struct event *timer;
    sim_done_fn done;
    void *arg;
    uint64_t t0_ns;
    uint32_t hash;
    char stan[6], tid[8], cls[2];
    bool busy, sent;
};

struct sim_conn {
    struct sim_engine *e;
    struct at_stream *s; /* NULL once the stream delivered on_close */
    const struct iso_dialect *d;
    struct isonet_framing wire; /* the terminal's framing; refused counts bad headers */
    uint8_t tpdu[ISO_TPDU_LEN];
    bool up, closed, proto_err, orphan; /* proto_err: an undecodable response */
    char reason[96];
    sim_conn_fn cb;
    void *arg;
    struct sim_req *pending;
    size_t inflight;
    struct sim_conn *prev, *next; /* engine's connection list */
};

struct sim_engine {
    struct event_base *base;
    struct sim_req *slots;
    size_t nslots;
    struct sim_req *free;
    struct sim_req **buckets;
    size_t bmask;
    size_t inflight;
    uint64_t unmatched;
    struct sim_conn *conns;
    size_t nconns;
    struct iso_msg resp;
    uint8_t arena[ISO_ARENA_FOR(SIM_MSG_MAX)];
    struct at_tls *tls;    /* --tls: every connection (NULL = plain TCP) */
    char server_name[128]; /* "" = the IP address connected to */
};

static void on_timeout(evutil_socket_t fd, short what, void *arg);

int sim_engine_new(struct event_base *base, size_t slots, struct sim_engine **out)
{
    if (slots == 0 || slots > (1u << 22))
        return -1;
    struct sim_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->base = base;
    e->nslots = slots;
    size_t nb = 16;
    while (nb < 2 * slots)
        nb <<= 1;
    e->bmask = nb - 1;
    e->slots = calloc(slots, sizeof *e->slots);
    e->buckets = calloc(nb, sizeof *e->buckets);
    if (!e->slots || !e->buckets)
        goto fail;
    for (size_t i = slots; i-- > 0;) {
        struct sim_req *r = &e->slots[i];
        r->e = e;
        r->timer = evtimer_new(base, on_timeout, r);
        if (!r->timer)
            goto fail;
        r->next_free = e->free;
        e->free = r;
    }
    iso_msg_init(&e->resp, e->arena, sizeof e->arena);
    *out = e;
    return 0;
fail:
    if (e->slots)
        for (size_t i = 0; i < slots; i++)
            if (e->slots[i].timer)
                event_free(e->slots[i].timer);
    free(e->slots);
    free(e->buckets);
    free(e);
    return -1;
}

size_t sim_engine_inflight(const struct sim_engine *e)
{
    return e->inflight;
}

uint64_t sim_engine_unmatched(const struct sim_engine *e)
{
    return e->unmatched;
}

/* ------------------------------------------------------------------ matching */

static uint32_t key_hash(const struct sim_conn *c, const char stan[6], const char cls[2])
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)c;
    for (int i = 0; i < 6; i++)
        h = (h ^ (uint8_t)stan[i]) * 1099511628211ull;
    h = (h ^ (uint8_t)cls[0]) * 1099511628211ull;
    h = (h ^ (uint8_t)cls[1]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* Request and response MTIs share a class: 0200/0210 -> "20", 0420/0421/0430 -> "42". */
static void mti_class(const char *mti, char cls[2])
{
    cls[0] = mti[1];
    cls[1] = (char)('0' + ((mti[2] - '0') & ~1));
}

static void unlink_req(struct sim_req *r)
{
    struct sim_engine *e = r->e;
    struct sim_req **pp = &e->buckets[r->hash & e->bmask];
    while (*pp && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = r->hnext;
    r->hnext = NULL;
    struct sim_conn *c = r->conn;
    if (c && r->sent)
        c->inflight--;
    if (r->cprev)
        r->cprev->cnext = r->cnext;
    else if (c && c->pending == r)
        c->pending = r->cnext;
    if (r->cnext)
        r->cnext->cprev = r->cprev;
    r->cprev = r->cnext = NULL;
    evtimer_del(r->timer);
}

static void recycle(struct sim_req *r)
{
    struct sim_engine *e = r->e;
    r->busy = r->sent = false;
    r->conn = NULL;
    r->term = NULL;
    r->done = NULL;
    r->next_free = e->free;
    e->free = r;
}

/* Ends a sent request: unlinks it, calls its owner once, then recycles the slot (after
 * the callback, so the slot cannot be handed out again while its outcome is read). */
static void finish(struct sim_req *r, struct sim_outcome *o)
{
    unlink_req(r);
    r->e->inflight--;
    if (o->latency_ns == 0)
        o->latency_ns = at_mono_ns() - r->t0_ns;
    sim_done_fn done = r->done;
    if (done)
        done(r->arg, r, o);
    recycle(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sim_req *r = arg;
    struct sim_outcome o = { .status = SIM_E_TIMEOUT, .reason = "no response before the timeout" };
    finish(r, &o);
}

static struct sim_req *lookup(struct sim_engine *e, struct sim_conn *c, const uint8_t *stan,
                              const uint8_t *tid, size_t tidlen, const char cls[2])
{
    uint32_t h = key_hash(c, (const char *)stan, cls);
    for (struct sim_req *r = e->buckets[h & e->bmask]; r; r = r->hnext) {
        if (r->hash != h || r->conn != c || memcmp(r->stan, stan, 6) != 0 ||
            memcmp(r->cls, cls, 2) != 0)
            continue;
        if (tid && (tidlen != 8 || memcmp(r->tid, tid, 8) != 0))
            continue;
        return r;
    }
    return NULL;
}

/* ------------------------------------------------------------------ connections */

static void on_frame(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct sim_conn *c = arg;
    struct sim_engine *e = c->e;
    struct iso_err ie;
    if (iso_unpack(c->d, msg, msg_len, &e->resp, &ie) != 0) {
        c->proto_err = true;
        at_stream_close(s, "undecodable response", false);
        return;
    }
    size_t sl = 0, tl = 0;
    const uint8_t *stan = iso_get(&e->resp, 11, &sl);
    const uint8_t *tid = iso_get(&e->resp, 41, &tl);
    char cls[2];
    mti_class(e->resp.mti, cls);
    bool is_resp = e->resp.mti[2] == '1' || e->resp.mti[2] == '3';
    struct sim_req *r = stan && sl == 6 && is_resp ? lookup(e, c, stan, tid, tl, cls) : NULL;
    if (!r) {
        e->unmatched++;
        return;
    }
    uint64_t now = at_mono_ns();
    struct sim_outcome o = { .status = SIM_ANSWERED,
                             .latency_ns = now > r->t0_ns ? now - r->t0_ns : 1,
                             .msg = &e->resp,
                             .raw = msg,
                             .raw_len = msg_len };
    sim_resp_fill(r->term, msg, msg_len, &e->resp, &o.resp);
    finish(r, &o);
}

static void on_connect(void *arg, struct at_stream *s)
{
    struct sim_conn *c = arg;
    c->up = true;
    if (c->cb)
        c->cb(c->arg, c, true, NULL);
}

static void conn_unlink(struct sim_conn *c)
{
    struct sim_engine *e = c->e;
    if (c->prev)
        c->prev->next = c->next;
    else if (e->conns == c)
        e->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    e->nconns--;
}

static void fail_pending(struct sim_conn *c)
{
    while (c->pending) {
        bool proto = c->proto_err || c->wire.refused > 0;
        struct sim_outcome o = { .status = proto ? SIM_E_PROTO : SIM_E_CONN, .reason = c->reason };
        finish(c->pending, &o);
    }
}

static void on_close(void *arg, struct at_stream *s, const char *reason)
{
    struct sim_conn *c = arg;
    c->s = NULL;
    c->up = false;
    c->closed = true;
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "closed");
    fail_pending(c);
    if (c->orphan) {
        conn_unlink(c);
        free(c);
        return;
    }
    if (c->cb)
        c->cb(c->arg, c, false, c->reason);
}

struct sim_conn *sim_conn_open(struct sim_engine *e, const struct sockaddr *addr, socklen_t alen,
                               const struct sim_term *t, sim_conn_fn cb, void *arg)
{
    struct sim_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->e = e;
    c->d = t->dialect;
    c->wire.kind = t->framing;
    c->wire.max = SIM_MSG_MAX + ISO_TPDU_LEN;
    memcpy(c->tpdu, t->tpdu, ISO_TPDU_LEN);
    c->cb = cb;
    c->arg = arg;
    static const struct at_stream_ops ops = { .frame = isonet_frame_fn,
                                              .on_frame = on_frame,
                                              .on_connect = on_connect,
                                              .on_close = on_close };
    struct at_stream_ops o = ops;
    o.frame_arg = &c->wire;
    struct at_stream_limits lim = { .max_frame = SIM_MSG_MAX + ISO_FRAME_MAX_HEADER,
                                    .tls = e->tls };
    char ip[INET6_ADDRSTRLEN] = "";
    if (e->tls && !e->server_name[0]) { /* the certificate must name the address dialled */
        if (addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, ip, sizeof ip);
        else if (addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, ip, sizeof ip);
    }
    lim.tls_server_name = e->server_name[0] ? e->server_name : ip;
    c->next = e->conns;
    if (e->conns)
        e->conns->prev = c;
    e->conns = c;
    e->nconns++;
    c->s = at_stream_connect(e->base, addr, alen, &o, c, &lim);
    if (!c->s) {
        conn_unlink(c);
        free(c);
        return NULL;
    }
    return c;
}

bool sim_conn_up(const struct sim_conn *c)
{
    return c->up && !c->closed;
}

bool sim_conn_closed(const struct sim_conn *c)
{
    return c->closed;
}

size_t sim_conn_output_len(const struct sim_conn *c)
{
    return c->s ? at_stream_output_len(c->s) : 0;
}

size_t sim_conn_inflight(const struct sim_conn *c)
{
    return c->inflight;
}

void sim_conn_free(struct sim_conn *c)
{
    if (!c)
        return;
    if (c->s) {
        /* The stream reports its end from the loop; free then. */
        c->orphan = true;
        c->up = false;
        snprintf(c->reason, sizeof c->reason, "closed by the owner");
        fail_pending(c);
        at_stream_close(c->s, "closed by the owner", false);
        return;
    }
    conn_unlink(c);
    free(c);
}

void sim_engine_free(struct sim_engine *e)
{
    if (!e)
        return;
    for (struct sim_conn *c = e->conns, *n; c; c = n) {
        n = c->next; /* c may be freed, or stay listed as an orphan */
        if (!c->orphan)
            sim_conn_free(c);
    }
    /* Let the streams deliver their on_close so their memory is released. */
    for (int i = 0; i < 100 && e->nconns > 0; i++)
        event_base_loop(e->base, EVLOOP_NONBLOCK);
    for (size_t i = 0; i < e->nslots; i++)
        event_free(e->slots[i].timer);
    free(e->slots);
    free(e->buckets);
    at_tls_free(e->tls);
    free(e);
}

int sim_engine_tls(struct sim_engine *e, const char *ca, const char *cert, const char *key,
                   const char *server_name, char *err, size_t errcap)
{
    char why[384];
    if (!ca || !ca[0]) {
        snprintf(err, errcap, "--tls needs --ca (the CA that signed the switch's certificate)");
        return -1;
    }
    if ((cert && cert[0]) != (key && key[0])) {
        snprintf(err, errcap, "--cert and --key go together");
        return -1;
    }
    struct at_tls_conf tc = { .ca = ca, .cert = cert, .key = key };
    struct at_tls *t = at_tls_new(&tc, why, sizeof why);
    if (!t) {
        snprintf(err, errcap, "TLS: %s", why);
        return -1;
    }
    at_tls_free(e->tls);
    e->tls = t;
    snprintf(e->server_name, sizeof e->server_name, "%s", server_name ? server_name : "");
    return 0;
}

/* ------------------------------------------------------------------ requests */

struct sim_req *sim_req_get(struct sim_engine *e, uint8_t **buf, size_t *cap)
{
    struct sim_req *r = e->free;
    if (!r)
        return NULL;
    e->free = r->next_free;
    r->next_free = NULL;
    r->busy = true;
    *buf = r->buf;
    *cap = sizeof r->buf;
    return r;
}

void sim_req_put(struct sim_engine *e, struct sim_req *r)
{
    if (r && r->busy && !r->sent)
        recycle(r);
}

int sim_req_send(struct sim_conn *c, struct sim_req *r, size_t len, const struct sim_sent *sent,
                 struct sim_term *t, unsigned timeout_ms, uint64_t t0_ns, sim_done_fn done,
                 void *arg)
{
    struct sim_engine *e = c->e;
    if (!sim_conn_up(c) || !c->s || len == 0 || len > sizeof r->buf ||
        isonet_send(c->s, &c->wire, c->tpdu, r->buf, len) != 0) {
        recycle(r);
        return -1;
    }
    memcpy(r->stan, sent->stan, 6);
    memcpy(r->tid, sent->tid, 8);
    mti_class(sent->mti, r->cls);
    r->conn = c;
    r->term = t;
    r->done = done;
    r->arg = arg;
    r->sent = true;
    r->t0_ns = t0_ns ? t0_ns : at_mono_ns();
    r->hash = key_hash(c, r->stan, r->cls);
    struct sim_req **b = &e->buckets[r->hash & e->bmask];
    r->hnext = *b;
    *b = r;
    r->cprev = NULL;
    r->cnext = c->pending;
    if (c->pending)
        c->pending->cprev = r;
    c->pending = r;
    c->inflight++;
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    evtimer_add(r->timer, &tv);
    e->inflight++;
    return 0;
}
