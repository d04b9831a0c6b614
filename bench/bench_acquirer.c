/* bench-acquirer: what one acquirer-sim process can generate. (1) The cost of building a
 * complete request (fields, PIN block, MAC) per terminal key scheme, one core. (2) The
 * sending core's closed-loop throughput over loopback TCP: C connections with K
 * requests in flight each, against a minimal reflector thread that turns each request
 * into a response by changing its MTI (so the figure is the generator's ceiling, not a
 * switch's). Runs a few seconds; prints figures. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "acquirer.h"
#include "clock.h"

static struct sim_terms terms;

static void bench_build(const char *tid, const char *pan, bool pin, double seconds)
{
    struct sim_term *t = sim_terms_find(&terms, tid);
    sim_term_set_counters(t, 1, 1);
    struct sim_txn x;
    memset(&x, 0, sizeof x);
    x.type = SIM_T_PURCHASE;
    snprintf(x.pan, sizeof x.pan, "%s", pan);
    if (pin)
        snprintf(x.pin, sizeof x.pin, "1234");
    x.amount = 1250;
    snprintf(x.currency, sizeof x.currency, "504");
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    char err[200];
    uint64_t n = 0, t0 = at_mono_ns(), end = t0 + (uint64_t)(seconds * 1e9), now = t0;
    while (now < end) {
        for (int i = 0; i < 256; i++) {
            x.stan = (uint32_t)(n % 999999) + 1;
            if (sim_term_build_request(t, &x, msg, sizeof msg, &len, NULL, err, sizeof err) != 0) {
                fprintf(stderr, "build: %s\n", err);
                exit(1);
            }
            n++;
        }
        now = at_mono_ns();
    }
    double s = (double)(now - t0) / 1e9;
    printf("build %-8s %-11s %9.0f requests/s  %6.2f us each\n", tid, pin ? "with PIN" : "no PIN",
           (double)n / s, s * 1e6 / (double)n);
}

/* ------------------------------------------------------------------ reflector */

struct reflector {
    int fd;
};

static void *reflect(void *arg)
{
    int fd = ((struct reflector *)arg)->fd;
    static __thread uint8_t in[1 << 16], out[1 << 16];
    size_t have = 0;
    for (;;) {
        ssize_t k = read(fd, in + have, sizeof in - have);
        if (k <= 0)
            break;
        have += (size_t)k;
        size_t off = 0, o = 0;
        while (have - off >= 2) {
            size_t n = (size_t)in[off] << 8 | in[off + 1];
            if (have - off < 2 + n)
                break;
            memcpy(out + o, in + off, 2 + n);
            out[o + 2 + 2] = (uint8_t)(out[o + 2 + 2] + 1); /* ASCII MTI: 0200 -> 0210 */
            o += 2 + n;
            off += 2 + n;
        }
        memmove(in, in + off, have - off);
        have -= off;
        for (size_t w = 0; w < o;) {
            ssize_t k2 = write(fd, out + w, o - w);
            if (k2 <= 0)
                return NULL;
            w += (size_t)k2;
        }
    }
    close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    int lfd = *(int *)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct reflector *r = malloc(sizeof *r);
        r->fd = fd;
        pthread_t th;
        pthread_create(&th, NULL, reflect, r);
        pthread_detach(th);
    }
}

/* ------------------------------------------------------------------ closed loop */

struct loop {
    struct event_base *base;
    struct sim_engine *e;
    struct sim_term *t;
    struct sim_txn x;
    uint64_t answered, errors, end_ns;
    int ups;
};

static struct loop g_loop;

static void fire(struct loop *l, struct sim_conn *c);

static void done(void *arg, struct sim_req *r, const struct sim_outcome *o)
{
    struct sim_conn *c = arg;
    struct loop *l = &g_loop;
    if (o->status == SIM_ANSWERED)
        l->answered++;
    else
        l->errors++;
    if (at_mono_ns() < l->end_ns)
        fire(l, c);
    else if (sim_engine_inflight(l->e) == 1)
        event_base_loopbreak(l->base);
}

static void fire(struct loop *l, struct sim_conn *c)
{
    uint8_t *buf;
    size_t cap, len;
    char err[200];
    struct sim_sent sent;
    struct sim_req *r = sim_req_get(l->e, &buf, &cap);
    if (!r)
        return;
    if (sim_term_build_request(l->t, &l->x, buf, cap, &len, &sent, err, sizeof err) != 0 ||
        sim_req_send(c, r, len, &sent, l->t, 10000, 0, done, c) != 0) {
        l->errors++;
        return;
    }
}

static void on_conn(void *arg, struct sim_conn *c, bool up, const char *reason)
{
    struct loop *l = arg;
    if (up)
        l->ups++;
}

int main(int argc, char **argv)
{
    int conns = argc > 1 ? atoi(argv[1]) : 2, depth = argc > 2 ? atoi(argv[2]) : 32;
    double secs = argc > 3 ? atof(argv[3]) : 2.0;
    char err[200];
    signal(SIGPIPE, SIG_IGN);
    if (sim_terms_builtin(&terms, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    bench_build("TERM0001", "4890010000000012", true, 0.5);
    bench_build("TERM0001", "4890010000000012", false, 0.5);
    bench_build("TERM0002", "4890020000000029", true, 0.5);
    bench_build("TERM0003", "4890040000000043", true, 0.5);
    bench_build("TERM0004", "4890010000000012", true, 0.5);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, acceptor, &lfd);

    struct loop *l = &g_loop;
    l->base = event_base_new();
    if (sim_engine_new(l->base, (size_t)(conns * depth), &l->e) != 0)
        return 1;
    l->t = sim_terms_find(&terms, "TERM0001");
    l->x.type = SIM_T_PURCHASE;
    snprintf(l->x.pan, sizeof l->x.pan, "4890010000000012");
    snprintf(l->x.pin, sizeof l->x.pin, "1234");
    snprintf(l->x.currency, sizeof l->x.currency, "504");
    l->x.amount = 1250;
    struct sim_conn *cs[64];
    if (conns > 64)
        conns = 64;
    for (int i = 0; i < conns; i++) {
        cs[i] = sim_conn_open(l->e, (struct sockaddr *)&a, al, l->t, on_conn, l);
        while (!sim_conn_up(cs[i]))
            event_base_loop(l->base, EVLOOP_ONCE);
    }
    uint64_t t0 = at_mono_ns();
    l->end_ns = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < conns; i++)
        for (int k = 0; k < depth; k++)
            fire(l, cs[i]);
    event_base_dispatch(l->base);
    double s = (double)(at_mono_ns() - t0) / 1e9;
    printf("closed loop: %d connections x %d in flight, %.1f s: %.0f requests/s answered "
           "(built, PIN block, MAC, sent, matched, response MAC checked), %llu errors\n",
           conns, depth, s, (double)l->answered / s, (unsigned long long)l->errors);
    sim_engine_free(l->e);
    event_base_free(l->base);
    sim_terms_free(&terms);
    return 0;
}
