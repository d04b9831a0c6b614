/* bench-null-issuer: an issuer host for benchmarks that approves every request at once,
 * without PIN check or database, so that the end-to-end benchmark can measure the switch
 * (switchd + hsm-sim + the journal) apart from the wallet issuer. It speaks the issuer link
 * of docs/issuer-sim.md (ascii87, 2-byte length framing): 0800 -> 0810 DE 39 00 (no MAC, as
 * network messages), 0100/0200/0420/0421 -> the response MTI (0421 -> 0430) echoing DE 2, 3, 4,
 * 7, 11, 32, 37, 41, 49, 90 with DE 39 00, DE 38, DE 54 for balance inquiries, MACed with the lab
 * ZAK (isonet: the same MAC field and response MTI rules as the switch). NOT an issuer: a load
 * sink. Usage: bench-null-issuer --listen 127.0.0.1:PORT */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <stdbool.h>

#include "hsm.h"
#include "iso8583.h"
#include "isonet.h"
#include "parse.h"

#define MAX_CONNS 64
#define BUF_CAP   (256 * 1024)
#define RESP_MAX  4096

struct nconn {
    int fd;
    uint8_t in[BUF_CAP];
    size_t in_len;
    uint8_t out[BUF_CAP];
    size_t out_len;
};

static const uint8_t LAB_ZAK[16] = { 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A,
                                     0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A };

static struct hsm_key *zak;
static const struct iso_dialect *dia;
static unsigned long long answered;

/* Builds the answer to req into c->out. 0, or -1 when req cannot be answered (skipped). */
static int answer(struct nconn *c, const struct iso_msg *req)
{
    static uint8_t arena[ISO_ARENA_FOR(4096)];
    static const int echo[] = { 2, 3, 4, 7, 11, 32, 37, 41, 49, 70, 90 };
    struct iso_msg r;
    struct iso_err e;
    iso_msg_init(&r, arena, sizeof arena);
    char mti[5];
    isonet_response_mti(req->mti, mti);
    bool netmgmt = mti[1] == '8';
    if (iso_set_mti(&r, mti) != 0)
        return -1;
    for (size_t i = 0; i < sizeof echo / sizeof echo[0]; i++) {
        size_t n;
        const uint8_t *p = iso_get(req, echo[i], &n);
        if (p && iso_set(&r, echo[i], p, n) != 0)
            return -1;
    }
    if (iso_set_str(&r, 39, "00") != 0)
        return -1;
    size_t pl = 0;
    const uint8_t *pc = iso_get(req, 3, &pl);
    if (!netmgmt) {
        if (mti[1] != '4' && iso_set_str(&r, 38, "NULL01") != 0)
            return -1;
        size_t cl = 0;
        const uint8_t *ccy = iso_get(req, 49, &cl);
        if (pc && pl >= 2 && pc[0] == '3' && ccy && cl == 3) {
            char de54[21];
            snprintf(de54, sizeof de54, "0002%.3sC000000100000", (const char *)ccy);
            if (iso_set_str(&r, 54, de54) != 0)
                return -1;
        }
    }
    if (c->out_len + 2 + RESP_MAX > BUF_CAP)
        return -1;
    uint8_t *msg = c->out + c->out_len + 2;
    size_t len = 0, cap = BUF_CAP - c->out_len - 2;
    struct isonet_mac at;
    /* Network messages go without a MAC, as everywhere on the issuer link. */
    int prc = netmgmt ? iso_pack(dia, &r, msg, cap, &len, &e)
                      : isonet_pack_mac(dia, &r, msg, cap, &len, &at, &e);
    if (prc != 0) {
        fprintf(stderr, "bench-null-issuer: pack %s: %s (field %d)\n", mti, iso_strerror(prc),
                e.field);
        return -1;
    }
    if (!netmgmt) {
        uint8_t mac[16];
        size_t ml = 0;
        if (hsm_mac_generate(zak, HSM_MAC_ISO9797_3, HSM_PAD_1, msg, at.off, mac, &ml) != 0 ||
            ml != ISONET_MAC_LEN)
            return -1;
        isonet_mac_patch(msg, &at, mac);
    }
    if (iso_frame_header(ISO_FRAME_2B, 0, len, NULL, c->out + c->out_len, 2, &e) != 0)
        return -1;
    c->out_len += 2 + len;
    answered++;
    return 0;
}

/* Answers every complete frame in c->in, then writes c->out (blocking). -1 closes c. */
static int serve(struct nconn *c)
{
    static uint8_t arena[ISO_ARENA_FOR(8192)];
    size_t off = 0;
    for (;;) {
        struct iso_frame fr;
        struct iso_err e;
        int rc = iso_frame_parse(ISO_FRAME_2B, 8192, c->in + off, c->in_len - off, &fr, &e);
        if (rc < 0)
            return -1;
        if (rc == ISO_FRAME_NEED_MORE)
            break;
        struct iso_msg m;
        iso_msg_init(&m, arena, sizeof arena);
        if (iso_unpack(dia, c->in + off + fr.msg_off, fr.msg_len, &m, &e) != 0 ||
            answer(c, &m) != 0)
            fprintf(stderr, "bench-null-issuer: skipped a frame\n");
        off += fr.consume;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    size_t w = 0;
    while (w < c->out_len) {
        ssize_t k = write(c->fd, c->out + w, c->out_len - w);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        w += (size_t)k;
    }
    c->out_len = 0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--listen") != 0) {
        fprintf(stderr, "usage: bench-null-issuer --listen HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *perr = NULL;
    dia = iso_dialect_find("ascii87");
    if (!at_parse_hostport(argv[2], &ss, &sl, &perr) || !dia ||
        hsm_key_from_clear(HSM_KT_ZAK, LAB_ZAK, 16, &zak) != 0) {
        fprintf(stderr, "bench-null-issuer: bad address or setup failure\n");
        return 2;
    }
    int ls = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&ss, sl) != 0 || listen(ls, 64) != 0) {
        fprintf(stderr, "bench-null-issuer: cannot listen on %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    static struct nconn conns[MAX_CONNS];
    struct pollfd pf[MAX_CONNS + 1];
    size_t n = 0;
    for (;;) {
        pf[0].fd = ls;
        pf[0].events = POLLIN;
        for (size_t i = 0; i < n; i++) {
            pf[i + 1].fd = conns[i].fd;
            pf[i + 1].events = POLLIN;
        }
        if (poll(pf, n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if ((pf[0].revents & POLLIN) && n < MAX_CONNS) {
            int fd = accept(ls, NULL, NULL);
            if (fd >= 0) {
                setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                conns[n].fd = fd;
                conns[n].in_len = conns[n].out_len = 0;
                n++;
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (!(pf[i + 1].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            struct nconn *c = &conns[i];
            ssize_t k = read(c->fd, c->in + c->in_len, BUF_CAP - c->in_len);
            if (k > 0)
                c->in_len += (size_t)k;
            if (k <= 0 || serve(c) != 0) {
                close(c->fd);
                conns[i] = conns[n - 1];
                pf[i + 1] = pf[n];
                n--;
                i--;
            }
        }
    }
}
