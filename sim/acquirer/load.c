/* `acquirer-sim load`: the load generator. C connections (one load terminal each, or
 * the demo terminal TERM0001 shared), a transaction mix over the wallet population,
 * open-loop arrivals at a fixed rate (latency counted from each arrival's scheduled
 * time, so a stalled server cannot hide its latency) or closed loop (K in flight per
 * connection), per-kind log-linear histograms, a progress line per second, and a text
 * + JSON report. `acquirer-sim load-seed` prints the SQL that registers the load
 * terminals (keys under the LMK) in schema switch. */
#include "load.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <event2/event.h>

#include "clock.h"
#include "hsm.h"
#include "parse.h"

#define TICK_US          1000u
#define SEND_PER_TICK    4000u
#define CONN_OUT_LIMIT   (256u * 1024u)
#define APPROVED_RING    65536u
#define CONNECT_WAIT_NS  (15ull * 1000000000ull)
#define DEFAULT_TIMEOUT  5000u
#define DEFAULT_STATEDIR "var/acquirer-sim"

struct load_opts {
    uint64_t rate;
    double duration, warmup;
    unsigned connections, closed_k;
    struct load_mix mix;
    const char *report;
    uint64_t cards, card_first;
    double max_error_rate;
    char host[64];
    bool load_terms, quiet, strict_rate;
    unsigned term_first;
    unsigned timeout_ms;
    uint64_t amount_max;
    uint64_t seed;
    size_t slots;
    char state_dir[256];
};

struct load_run;

struct lconn {
    struct load_run *run;
    struct sim_conn *c;
    struct sim_term *t;
    bool up, ended;
};

/* Per-request context (one per engine slot, from a free list: nothing allocated per message). */
struct lreq {
    struct lreq *next; /* free list */
    struct load_run *run;
    uint32_t conn;
    uint32_t card;
    uint8_t kind;
    bool measured;
    bool has_orig;
    uint64_t amount;
    uint32_t stan;
    char de7[11];
    char proc[7];
};

struct approved {
    uint32_t conn, card, stan;
    uint64_t amount;
    char de7[11];
    char proc[7];
};

struct load_run {
    struct load_opts o;
    struct event_base *base;
    struct sim_engine *e;
    struct event *tick, *second;
    struct sim_terms demo;
    struct sim_term **lterms; /* load terminals (owned) */
    struct lconn *conns;
    unsigned n_conns, n_up, n_ended, rr;
    struct lreq *reqs, *free_reqs;
    struct approved *ring;
    size_t ring_head, ring_count;
    uint64_t rng;
    /* schedule */
    bool started, stopping;
    uint64_t drain_end; /* mono ns: stop waiting for answers (0 until stopping) */
    uint64_t t0, t_measure, t_end, t_stop;
    uint64_t k_warm, k_total, next_k;
    bool blocked_recently;
    uint64_t connect_deadline;
    struct rusage ru_start;
    bool ru_taken;
    /* per-second progress */
    struct at_hist sec;
    uint64_t sec_answered, sec_errors, sec_timeouts, tot_sent_all;
    unsigned seconds;
    char first_error[160];
    struct load_result r;
};

static uint64_t rnd(struct load_run *L)
{
    uint64_t x = L->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    L->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void note_error(struct load_run *L, const char *what)
{
    if (!L->first_error[0])
        snprintf(L->first_error, sizeof L->first_error, "%s", what);
}

/* ------------------------------------------------------------------ completions */

static int send_one(struct load_run *L, int conn_hint, uint64_t t0_ns, bool measured);

static void ring_push(struct load_run *L, const struct lreq *q)
{
    size_t i = (L->ring_head + L->ring_count) % APPROVED_RING;
    if (L->ring_count == APPROVED_RING) {
        L->ring_head = (L->ring_head + 1) % APPROVED_RING; /* drop the oldest */
        L->ring_count--;
        i = (L->ring_head + L->ring_count) % APPROVED_RING;
    }
    struct approved *a = &L->ring[i];
    a->conn = q->conn;
    a->card = q->card;
    a->stan = q->stan;
    a->amount = q->amount;
    memcpy(a->de7, q->de7, sizeof a->de7);
    memcpy(a->proc, q->proc, sizeof a->proc);
    L->ring_count++;
}

static void on_done(void *arg, struct sim_req *sr, const struct sim_outcome *o)
{
    (void)sr;
    struct lreq *q = arg;
    struct load_run *L = q->run;
    struct load_result *r = &L->r;
    bool answered = o->status == SIM_ANSWERED;
    bool mac_ok = answered && sim_mac_acceptable(&o->resp);
    if (answered && mac_ok) {
        r->all_answered++;
        L->sec_answered++;
        at_hist_record(&L->sec, o->latency_ns);
        bool ok = strcmp(o->resp.rc, "00") == 0;
        if (ok)
            r->all_approved++;
        if (ok && (q->kind == LOAD_K_PURCHASE || q->kind == LOAD_K_PURCHASE_NOPIN ||
                   q->kind == LOAD_K_CASH))
            ring_push(L, q);
        if (q->measured) {
            r->answered++;
            at_hist_record(&r->total, o->latency_ns);
            at_hist_record(&r->kind[q->kind], o->latency_ns);
            const char *rc = o->resp.rc;
            if (rc[0] >= '0' && rc[0] <= '9' && rc[1] >= '0' && rc[1] <= '9' && !rc[2])
                r->rc[(rc[0] - '0') * 10 + (rc[1] - '0')]++;
            else
                r->rc_other++;
            if (!ok)
                r->unexpected++;
        }
    } else if (o->status == SIM_E_TIMEOUT) {
        L->sec_timeouts++;
        if (q->measured)
            r->timeouts++;
    } else {
        L->sec_errors++;
        if (q->measured)
            r->errors++;
        note_error(L, answered ? "response MAC wrong or missing" : o->reason ? o->reason : "?");
    }
    uint32_t conn = q->conn;
    q->next = L->free_reqs;
    L->free_reqs = q;
    if (L->o.closed_k && L->started && !L->stopping && L->conns[conn].up) {
        uint64_t now = at_mono_ns();
        (void)send_one(L, (int)conn, 0, now >= L->t_measure && now < L->t_end);
    }
}

/* ------------------------------------------------------------------ sending */

enum { SEND_OK = 0, SEND_NO_SLOT = 1, SEND_NO_CONN = 2, SEND_FAILED = -1 };

static int pick_conn(struct load_run *L)
{
    for (unsigned n = 0; n < L->n_conns; n++) {
        unsigned i = L->rr++ % L->n_conns;
        struct lconn *lc = &L->conns[i];
        if (lc->up && sim_conn_output_len(lc->c) < CONN_OUT_LIMIT)
            return (int)i;
    }
    return -1;
}

/* Builds and sends one request of a kind drawn from the mix, on conn_hint (closed loop)
 * or a round-robin connection. t0_ns is its arrival time (0 = now). */
static int send_one(struct load_run *L, int conn_hint, uint64_t t0_ns, bool measured)
{
    uint8_t *buf;
    size_t cap;
    if (!L->free_reqs)
        return SEND_NO_SLOT;
    struct sim_req *sr = sim_req_get(L->e, &buf, &cap);
    if (!sr)
        return SEND_NO_SLOT;
    enum load_kind kind = load_mix_pick(&L->o.mix, rnd(L));
    struct approved orig;
    memset(&orig, 0, sizeof orig);
    bool has_orig = false;
    int ci = conn_hint;
    if (kind == LOAD_K_REVERSAL) {
        /* The most recent approved original whose connection is still usable. */
        while (L->ring_count) {
            size_t i = (L->ring_head + L->ring_count - 1) % APPROVED_RING;
            L->ring_count--;
            struct lconn *lc = &L->conns[L->ring[i].conn];
            if (lc->up) {
                orig = L->ring[i];
                has_orig = true;
                break;
            }
        }
        if (!has_orig) {
            kind = LOAD_K_PURCHASE;
            if (measured)
                L->r.reversal_fallback++;
        } else {
            ci = (int)orig.conn; /* a reversal goes with its original's terminal */
        }
    }
    if (ci < 0)
        ci = pick_conn(L);
    if (ci < 0 || !L->conns[ci].up) {
        if (has_orig) { /* keep it for a later reversal */
            L->ring_count++;
        }
        sim_req_put(L->e, sr);
        return SEND_NO_CONN;
    }
    struct lconn *lc = &L->conns[ci];
    struct lreq *q = L->free_reqs;
    L->free_reqs = q->next;

    struct sim_txn x;
    memset(&x, 0, sizeof x);
    struct load_card card;
    uint32_t ci_card;
    if (has_orig) {
        ci_card = orig.card;
    } else {
        uint64_t span = L->o.cards - L->o.card_first + 1;
        ci_card = (uint32_t)(L->o.card_first + rnd(L) % span);
    }
    if (load_card_of(ci_card, &card) != 0) {
        q->next = L->free_reqs;
        L->free_reqs = q;
        sim_req_put(L->e, sr);
        return SEND_FAILED;
    }
    memcpy(x.pan, card.pan, sizeof card.pan);
    memcpy(x.currency, card.currency, 4);
    memcpy(x.expiry, "2812", 5);
    x.amount = 1 + rnd(L) % L->o.amount_max;
    switch (kind) {
    case LOAD_K_PURCHASE:
        x.type = SIM_T_PURCHASE;
        memcpy(x.pin, card.pin, 5);
        break;
    case LOAD_K_PURCHASE_NOPIN:
        x.type = SIM_T_PURCHASE;
        break;
    case LOAD_K_CASH:
        x.type = SIM_T_CASH;
        memcpy(x.pin, card.pin, 5);
        break;
    case LOAD_K_BALANCE:
        x.type = SIM_T_BALANCE;
        memcpy(x.pin, card.pin, 5);
        x.amount = 0;
        break;
    case LOAD_K_REFUND:
        x.type = SIM_T_REFUND;
        break;
    case LOAD_K_REVERSAL:
    default:
        x.type = SIM_T_REVERSAL;
        x.amount = orig.amount;
        memcpy(x.proc, orig.proc, sizeof x.proc);
        memcpy(x.orig_mti, "0200", 5);
        x.orig_stan = orig.stan;
        memcpy(x.orig_time, orig.de7, sizeof x.orig_time);
        break;
    }
    memset(card.pin, 0, sizeof card.pin);
    struct sim_sent sent;
    size_t len = 0;
    char err[160];
    int brc = sim_term_build_request(lc->t, &x, buf, cap, &len, &sent, err, sizeof err);
    memset(x.pin, 0, sizeof x.pin);
    if (brc != 0) {
        note_error(L, err);
        q->next = L->free_reqs;
        L->free_reqs = q;
        sim_req_put(L->e, sr);
        if (measured)
            L->r.errors++;
        return SEND_FAILED;
    }
    q->conn = (uint32_t)ci;
    q->card = ci_card;
    q->kind = (uint8_t)kind;
    q->measured = measured;
    q->amount = x.amount;
    q->stan = (uint32_t)strtoul(sent.stan, NULL, 10);
    memcpy(q->de7, sent.de7, sizeof q->de7);
    memcpy(q->proc, sent.proc, sizeof q->proc);
    q->run = L;
    if (sim_req_send(lc->c, sr, len, &sent, lc->t, L->o.timeout_ms, t0_ns, on_done, q) != 0) {
        q->next = L->free_reqs;
        L->free_reqs = q;
        if (measured)
            L->r.errors++;
        note_error(L, "connection not usable");
        return SEND_FAILED;
    }
    L->r.all_sent++;
    L->tot_sent_all++;
    if (measured) {
        L->r.sent++;
        L->r.per_kind_sent[kind]++;
    }
    return SEND_OK;
}

/* ------------------------------------------------------------------ schedule */

static double cpu_s(const struct rusage *u)
{
    return (double)u->ru_utime.tv_sec + (double)u->ru_utime.tv_usec / 1e6 +
           (double)u->ru_stime.tv_sec + (double)u->ru_stime.tv_usec / 1e6;
}

static void begin_run(struct load_run *L)
{
    L->started = true;
    L->t0 = at_mono_ns();
    L->t_measure = L->t0 + (uint64_t)(L->o.warmup * 1e9);
    L->t_end = L->t_measure + (uint64_t)(L->o.duration * 1e9);
    L->k_warm = (uint64_t)(L->o.warmup * (double)L->o.rate + 0.5);
    L->k_total = L->k_warm + (uint64_t)(L->o.duration * (double)L->o.rate + 0.5);
    L->r.conns_up = L->n_up;
    if (!L->o.quiet)
        fprintf(stderr, "load: %u of %u connections up; %s\n", L->n_up, L->n_conns,
                L->o.closed_k ? "closed loop" : "open loop");
    if (L->o.closed_k) {
        for (unsigned i = 0; i < L->n_conns; i++)
            for (unsigned k = 0; k < L->o.closed_k && L->conns[i].up; k++)
                (void)send_one(L, (int)i, 0, L->o.warmup <= 0);
    }
}

static void finish(struct load_run *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double el = (double)(L->t_stop > L->t_measure ? L->t_stop - L->t_measure : 0) / 1e9;
    if (L->ru_taken && el > 0)
        L->r.gen_cpu_pct = 100.0 * (cpu_s(&ru) - cpu_s(&L->ru_start)) / el;
    event_base_loopbreak(L->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct load_run *L = arg;
    uint64_t now = at_mono_ns();
    if (!L->started) {
        if (L->n_up + L->n_ended >= L->n_conns || now > L->connect_deadline) {
            if (L->n_up == 0) {
                fprintf(stderr, "acquirer-sim load: no connection came up (%s)\n",
                        L->first_error[0] ? L->first_error : "timeout");
                event_base_loopbreak(L->base);
                return;
            }
            begin_run(L);
        }
        return;
    }
    if (!L->ru_taken && now >= L->t_measure) {
        getrusage(RUSAGE_SELF, &L->ru_start);
        L->ru_taken = true;
    }
    if (!L->stopping) {
        if (!L->o.closed_k) {
            uint64_t due = load_sched_due(L->t0, now, L->o.rate);
            if (due > L->k_total)
                due = L->k_total;
            unsigned n = 0;
            bool blocked = false;
            while (L->next_k < due && n < SEND_PER_TICK) {
                uint64_t at = load_sched_time(L->t0, L->next_k, L->o.rate);
                int rc = send_one(L, -1, at, L->next_k >= L->k_warm);
                if (rc == SEND_NO_SLOT || rc == SEND_NO_CONN) {
                    blocked = true;
                    L->blocked_recently = true;
                    break;
                }
                uint64_t lag = at_mono_ns() - at;
                if (L->next_k >= L->k_warm && rc == SEND_OK) {
                    if (lag > L->r.send_lag_max_ns)
                        L->r.send_lag_max_ns = lag;
                    if (lag > LOAD_LATE_NS) {
                        L->r.late_sends++;
                        if (!L->blocked_recently)
                            L->r.late_sends_gen++;
                    }
                }
                L->next_k++;
                n++;
            }
            if (!blocked && L->next_k >= due)
                L->blocked_recently = false;
            /* Every arrival sent, or the backlog outlived the window by the timeout. */
            if (L->next_k >= L->k_total ||
                now > L->t_end + (uint64_t)L->o.timeout_ms * 1000000ull) {
                L->stopping = true;
                L->t_stop = now < L->t_end ? L->t_end : now;
                L->r.scheduled = L->k_total - L->k_warm;
                uint64_t sent_measured = L->next_k > L->k_warm ? L->next_k - L->k_warm : 0;
                L->r.unsent = L->r.scheduled - sent_measured;
                L->t_stop = L->t_end;
            }
        } else if (now >= L->t_end) {
            L->stopping = true;
            L->t_stop = L->t_end;
        }
        if (L->o.closed_k && !L->stopping && L->n_ended == L->n_conns)
            L->stopping = true;
    }
    if (L->stopping) {
        /* Requests sent up to the stop get their full timeout (then count as timeouts): the
         * journal check needs every request either answered or timed out. */
        if (!L->drain_end)
            L->drain_end = (now > L->t_stop ? now : L->t_stop) +
                           (uint64_t)L->o.timeout_ms * 1000000ull + 1000000000ull;
        if (sim_engine_inflight(L->e) == 0 || now > L->drain_end)
            finish(L);
    }
}

static void on_second(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct load_run *L = arg;
    if (!L->started)
        return;
    L->seconds++;
    if (!L->o.quiet) {
        uint64_t now = at_mono_ns();
        const char *phase = now < L->t_measure ? "warm-up" : L->stopping ? "drain" : "run";
        fprintf(stderr,
                "[%4us %-7s] sent %llu answered %llu tps %llu p50 %.2f ms p99 %.2f ms errors "
                "%llu timeouts %llu in flight %zu\n",
                L->seconds, phase, (unsigned long long)L->tot_sent_all,
                (unsigned long long)L->r.all_answered, (unsigned long long)L->sec_answered,
                (double)at_hist_quantile(&L->sec, 0.5) / 1e6,
                (double)at_hist_quantile(&L->sec, 0.99) / 1e6, (unsigned long long)L->sec_errors,
                (unsigned long long)L->sec_timeouts, sim_engine_inflight(L->e));
    }
    at_hist_reset(&L->sec);
    L->sec_answered = L->sec_errors = L->sec_timeouts = 0;
}

static void on_conn(void *arg, struct sim_conn *c, bool up, const char *reason)
{
    (void)c;
    struct lconn *lc = arg;
    struct load_run *L = lc->run;
    if (up) {
        lc->up = true;
        L->n_up++;
        return;
    }
    if (lc->up) {
        lc->up = false;
        L->n_up--;
    }
    if (!lc->ended) {
        lc->ended = true;
        L->n_ended++;
        note_error(L, reason ? reason : "connection ended");
        if (L->started && !L->stopping && !L->o.quiet)
            fprintf(stderr, "load: connection to %s ended: %s\n", lc->t->id, reason ? reason : "?");
    }
}

/* ------------------------------------------------------------------ options */

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v;
    if (!at_parse_u64(s, hi, &v) || v < lo)
        return -1;
    *out = v;
    return 0;
}

static void load_usage(FILE *f)
{
    fprintf(f,
            "usage: acquirer-sim load [--rate N] [--duration S] [--connections C] [--closed K]\n"
            "         [--mix SPEC] [--warmup S] [--report FILE.json] [--cards N] [--card-first I]\n"
            "         [--max-error-rate X] [--host ADDR:PORT] [--load-terminals]\n"
            "         [--terminal-first I] [--timeout-ms MS] [--amount-max MINOR] [--seed N]\n"
            "         [--slots N] [--state-dir DIR] [--quiet] [--strict-rate]\n"
            "       acquirer-sim load-seed --terminals C [--first I]   (SQL on stdout)\n"
            "defaults: --rate 100 --duration 10 --connections 4 --warmup 1 --cards 1000\n"
            "          --card-first 9 --max-error-rate 0 --timeout-ms 5000 --amount-max 50\n"
            "          --mix %s\n"
            "Without --load-terminals every connection is the demo terminal TERM0001.\n",
            LOAD_MIX_DEFAULT);
}

static int parse_opts(int argc, char **argv, struct load_opts *o)
{
    char err[200];
    memset(o, 0, sizeof *o);
    o->rate = 100;
    o->duration = 10;
    o->warmup = 1;
    o->connections = 4;
    o->cards = 1000;
    o->card_first = 9;
    o->timeout_ms = DEFAULT_TIMEOUT;
    o->amount_max = 50;
    o->seed = 0x9E3779B97F4A7C15ull;
    o->term_first = 1;
    const char *env_dir = getenv("ATLAS_ACQ_STATE_DIR");
    snprintf(o->state_dir, sizeof o->state_dir, "%s",
             env_dir && env_dir[0] ? env_dir : DEFAULT_STATEDIR);
    if (load_mix_parse(LOAD_MIX_DEFAULT, &o->mix, err, sizeof err) != 0)
        return -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            load_usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--load-terminals") == 0) {
            o->load_terms = true;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(a, "--strict-rate") == 0) {
            o->strict_rate = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "acquirer-sim load: unexpected argument '%s' (try --help)\n", a);
            return -1;
        }
        const char *k = a + 2, *v = argv[++i];
        uint64_t u = 0;
        int bad = 0;
        if (strcmp(k, "rate") == 0)
            bad = parse_u64(v, 1, 10000000, &o->rate);
        else if (strcmp(k, "duration") == 0)
            bad = parse_double(v, 0.001, 86400, &o->duration);
        else if (strcmp(k, "warmup") == 0)
            bad = parse_double(v, 0, 3600, &o->warmup);
        else if (strcmp(k, "connections") == 0) {
            bad = parse_u64(v, 1, 200000, &u);
            o->connections = (unsigned)u;
        } else if (strcmp(k, "closed") == 0) {
            bad = parse_u64(v, 1, 100000, &u);
            o->closed_k = (unsigned)u;
        } else if (strcmp(k, "mix") == 0) {
            if (load_mix_parse(v, &o->mix, err, sizeof err) != 0) {
                fprintf(stderr, "acquirer-sim load: --mix: %s\n", err);
                return -1;
            }
        } else if (strcmp(k, "report") == 0)
            o->report = v;
        else if (strcmp(k, "cards") == 0)
            bad = parse_u64(v, 1, 999999999, &o->cards);
        else if (strcmp(k, "card-first") == 0)
            bad = parse_u64(v, 1, 999999999, &o->card_first);
        else if (strcmp(k, "max-error-rate") == 0)
            bad = parse_double(v, 0, 1, &o->max_error_rate);
        else if (strcmp(k, "host") == 0) {
            if (strlen(v) >= sizeof o->host)
                bad = -1;
            else
                snprintf(o->host, sizeof o->host, "%s", v);
        } else if (strcmp(k, "terminal-first") == 0) {
            bad = parse_u64(v, 1, 999999, &u);
            o->term_first = (unsigned)u;
        } else if (strcmp(k, "timeout-ms") == 0) {
            bad = parse_u64(v, 1, 600000, &u);
            o->timeout_ms = (unsigned)u;
        } else if (strcmp(k, "amount-max") == 0)
            bad = parse_u64(v, 1, 999999999999ull, &o->amount_max);
        else if (strcmp(k, "seed") == 0)
            bad = parse_u64(v, 1, UINT64_MAX, &o->seed);
        else if (strcmp(k, "slots") == 0) {
            bad = parse_u64(v, 1, 1000000, &u);
            o->slots = (size_t)u;
        } else if (strcmp(k, "state-dir") == 0) {
            if (strlen(v) >= sizeof o->state_dir)
                bad = -1;
            else
                snprintf(o->state_dir, sizeof o->state_dir, "%s", v);
        } else {
            fprintf(stderr, "acquirer-sim load: unknown option --%s (try --help)\n", k);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "acquirer-sim load: bad value for --%s\n", k);
            return -1;
        }
    }
    if (o->card_first > o->cards) {
        fprintf(stderr, "acquirer-sim load: --card-first %llu is above --cards %llu\n",
                (unsigned long long)o->card_first, (unsigned long long)o->cards);
        return -1;
    }
    if (o->load_terms && (uint64_t)o->term_first + o->connections - 1 > 999999) {
        fprintf(stderr, "acquirer-sim load: load terminal indices above 999999\n");
        return -1;
    }
    if (!o->slots) {
        /* Enough for 250 ms of arrivals (or K per connection), at least 256. */
        uint64_t s = o->closed_k ? (uint64_t)o->closed_k * o->connections : o->rate / 4;
        o->slots = (size_t)(s < 256 ? 256 : s > 262144 ? 262144 : s);
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

static void raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need + 64)
        return;
    rlim_t want = need + 64;
    if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
        want = rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || want < need + 64)
        fprintf(stderr, "acquirer-sim load: open-file limit %llu is low for %u connections\n",
                (unsigned long long)want, need);
}

static void run_free(struct load_run *L)
{
    if (L->tick)
        event_free(L->tick);
    if (L->second)
        event_free(L->second);
    sim_engine_free(L->e);
    if (L->base)
        event_base_free(L->base);
    if (L->lterms)
        for (unsigned i = 0; i < L->n_conns; i++)
            load_term_free(L->lterms[i]);
    free(L->lterms);
    sim_terms_free(&L->demo);
    free(L->conns);
    free(L->reqs);
    free(L->ring);
}

int load_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct load_run *L = calloc(1, sizeof *L);
    if (!L)
        return 2;
    int exit_code = 2;
    char err[256];
    if (parse_opts(argc, argv, &L->o) != 0) {
        free(L);
        return 1;
    }
    struct load_opts *o = &L->o;
    L->rng = o->seed;
    L->n_conns = o->connections;
    raise_nofile(o->connections);
    L->conns = calloc(L->n_conns, sizeof *L->conns);
    L->reqs = calloc(o->slots, sizeof *L->reqs);
    L->ring = calloc(APPROVED_RING, sizeof *L->ring);
    if (!L->conns || !L->reqs || !L->ring)
        goto out;
    for (size_t i = 0; i < o->slots; i++) {
        L->reqs[i].next = L->free_reqs;
        L->free_reqs = &L->reqs[i];
    }
    const char *addr = o->host[0] ? o->host : "127.0.0.1:8583";
    if (o->load_terms) {
        L->lterms = calloc(L->n_conns, sizeof *L->lterms);
        if (!L->lterms)
            goto out;
        for (unsigned i = 0; i < L->n_conns; i++) {
            L->lterms[i] = load_term_new(o->term_first + i, addr, 1);
            if (!L->lterms[i]) {
                fprintf(stderr, "acquirer-sim load: cannot set up load terminal %u\n",
                        o->term_first + i);
                goto out;
            }
            L->conns[i].t = L->lterms[i];
        }
    } else {
        if (sim_terms_builtin(&L->demo, err, sizeof err) != 0) {
            fprintf(stderr, "acquirer-sim load: %s\n", err);
            goto out;
        }
        struct sim_term *t = sim_terms_find(&L->demo, "TERM0001");
        /* STANs of the shared demo terminal come from its state file, reserved for the run. */
        double est = o->closed_k ? 50000.0 : (double)o->rate;
        double n = est * (o->duration + o->warmup) * 1.2 + 1000;
        if (!t || sim_term_reserve(t, o->state_dir, (uint32_t)(n > 999000 ? 999000 : n), err,
                                   sizeof err) != 0) {
            fprintf(stderr, "acquirer-sim load: %s\n", t ? err : "no TERM0001");
            goto out;
        }
        for (unsigned i = 0; i < L->n_conns; i++)
            L->conns[i].t = t;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    const char *perr = NULL;
    if (!at_parse_hostport(addr, &ss, &sslen, &perr)) {
        fprintf(stderr, "acquirer-sim load: bad address '%s': %s\n", addr, perr ? perr : "?");
        exit_code = 1;
        goto out;
    }
    L->base = event_base_new();
    if (!L->base || sim_engine_new(L->base, o->slots, &L->e) != 0) {
        fprintf(stderr, "acquirer-sim load: event loop setup failed\n");
        goto out;
    }
    L->tick = event_new(L->base, -1, EV_PERSIST, on_tick, L);
    L->second = event_new(L->base, -1, EV_PERSIST, on_second, L);
    struct timeval tv_tick = { 0, TICK_US }, tv_sec = { 1, 0 };
    if (!L->tick || !L->second || event_add(L->tick, &tv_tick) != 0 ||
        event_add(L->second, &tv_sec) != 0)
        goto out;
    for (unsigned i = 0; i < L->n_conns; i++) {
        L->conns[i].run = L;
        L->conns[i].c = sim_conn_open(L->e, (struct sockaddr *)&ss, sslen, L->conns[i].t, on_conn,
                                      &L->conns[i]);
        if (!L->conns[i].c) {
            fprintf(stderr, "acquirer-sim load: cannot open connection %u\n", i + 1);
            goto out;
        }
    }
    L->connect_deadline = at_mono_ns() + CONNECT_WAIT_NS;

    struct load_result *r = &L->r;
    r->closed = o->closed_k > 0;
    r->closed_k = o->closed_k;
    r->requested = o->closed_k ? 0 : o->rate;
    r->connections = o->connections;
    r->duration_s = o->duration;
    r->warmup_s = o->warmup;
    at_hist_reset(&r->total);
    at_hist_reset(&L->sec);
    for (int k = 0; k < LOAD_K_max; k++)
        at_hist_reset(&r->kind[k]);

    event_base_dispatch(L->base);
    if (!L->started) {
        exit_code = 2;
        goto out;
    }
    r->elapsed_s = (double)(L->t_stop - L->t_measure) / 1e9;
    r->unmatched = sim_engine_unmatched(L->e);
    if (!r->closed) {
        r->rate_kept = r->unsent == 0 && r->late_sends_gen * 100 <= r->sent;
    } else {
        r->rate_kept = true;
        r->scheduled = r->sent;
    }
    load_report_text(stdout, r);
    if (L->first_error[0])
        printf("first error: %s\n", L->first_error);
    if (o->report) {
        FILE *f = fopen(o->report, "w");
        if (!f || load_report_json(f, r) != 0 || fclose(f) != 0) {
            fprintf(stderr, "acquirer-sim load: cannot write %s: %s\n", o->report, strerror(errno));
            exit_code = 2;
            goto out;
        }
    }
    double er = load_error_rate(r);
    if (r->sent == 0 || er > o->max_error_rate) {
        printf("FAIL: error rate %.4f%% above the threshold %.4f%%\n", 100.0 * er,
               100.0 * o->max_error_rate);
        exit_code = 3;
    } else if (!r->closed && !r->rate_kept && o->strict_rate) {
        exit_code = 4;
    } else {
        exit_code = 0;
    }
out:
    run_free(L);
    free(L);
    return exit_code;
}

/* ------------------------------------------------------------------ load-seed */

static int key_row(struct hsm *h, enum hsm_keytype kt, const uint8_t clear[16], char *under,
                   size_t cap, char kcv_hex[7])
{
    struct hsm_key *k = NULL;
    uint8_t kcv[8];
    if (hsm_key_from_clear(kt, clear, 16, &k) != 0 ||
        hsm_key_to_lmk(h, k, HSM_SCHEME_U, under, cap) != 0) {
        hsm_key_release(k);
        return -1;
    }
    hsm_key_kcv(k, kcv);
    snprintf(kcv_hex, 7, "%02X%02X%02X", kcv[0], kcv[1], kcv[2]);
    hsm_key_release(k);
    return 0;
}

int load_seed_main(int argc, char **argv)
{
    uint64_t n = 0, first = 1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--terminals") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], 1, 999999, &n) != 0)
                n = 0;
        } else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], 1, 999999, &first) != 0)
                first = 0;
        } else {
            fprintf(stderr, "usage: acquirer-sim load-seed --terminals C [--first I]\n");
            return 1;
        }
    }
    if (n == 0 || first == 0 || first + n - 1 > 999999) {
        fprintf(stderr, "acquirer-sim load-seed: --terminals 1..999999 (first + C - 1 <= "
                        "999999) is needed\n");
        return 1;
    }
    struct hsm *h = NULL;
    if (hsm_new(&h, 0) != 0) {
        fprintf(stderr, "acquirer-sim load-seed: libhsm setup failed\n");
        return 2;
    }
    printf("-- Load-test terminals %s.. (acquirer-sim load-seed): TPK + TAK derived from the\n"
           "-- index (docs/BENCHMARKS.md), stored under the LMK. Lab keys. Idempotent.\n"
           "BEGIN;\n",
           "LOAD0001");
    int rc = 0;
    const uint64_t batch = 1000;
    for (uint64_t b = first; b < first + n && rc == 0; b += batch) {
        uint64_t e = b + batch < first + n ? b + batch : first + n;
        printf("INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES\n");
        for (uint64_t i = b; i < e && rc == 0; i++) {
            uint8_t tpk[16], tak[16];
            char id[9], u1[64], u2[64], k1[7], k2[7];
            if (load_term_id((unsigned)i, id) != 0 || load_term_keys((unsigned)i, tpk, tak) != 0 ||
                key_row(h, HSM_KT_TPK, tpk, u1, sizeof u1, k1) != 0 ||
                key_row(h, HSM_KT_TAK, tak, u2, sizeof u2, k2) != 0)
                rc = -1;
            memset(tpk, 0, sizeof tpk);
            memset(tak, 0, sizeof tak);
            if (rc == 0)
                printf("  ('%s.TPK','TPK','TDES-2KEY','%s','%s'),\n  ('%s.TAK','TAK','TDES-2KEY',"
                       "'%s','%s')%s\n",
                       id, u1, k1, id, u2, k2, i + 1 < e ? "," : "");
        }
        printf("ON CONFLICT (key_id) DO UPDATE SET key_type = EXCLUDED.key_type, scheme = "
               "EXCLUDED.scheme,\n  key_under_lmk = EXCLUDED.key_under_lmk, kcv = EXCLUDED.kcv, "
               "status = 'active';\n");
        printf("INSERT INTO switch.terminals (acquirer_id, terminal_id, merchant_id, key_scheme, "
               "tpk_key_id, tak_key_id, bdk_key_id) VALUES\n");
        for (uint64_t i = b; i < e; i++) {
            char id[9];
            if (load_term_id((unsigned)i, id) != 0)
                rc = -1;
            printf("  ('%s','%s','ATLASLOAD%06u','TPK','%s.TPK','%s.TAK',NULL)%s\n",
                   SIM_ACQUIRER_ID, id, (unsigned)(i % 1000000), id, id, i + 1 < e ? "," : "");
        }
        printf("ON CONFLICT (acquirer_id, terminal_id) DO UPDATE SET merchant_id = "
               "EXCLUDED.merchant_id,\n  key_scheme = EXCLUDED.key_scheme, tpk_key_id = "
               "EXCLUDED.tpk_key_id, tak_key_id = EXCLUDED.tak_key_id,\n  bdk_key_id = NULL, "
               "enabled = true;\n");
    }
    hsm_free(h);
    if (rc != 0) {
        fprintf(stderr, "acquirer-sim load-seed: key derivation failed\n");
        printf("ROLLBACK;\n");
        return 2;
    }
    printf("COMMIT;\n");
    return fflush(stdout) == 0 ? 0 : 2;
}
