/* acquirer-sim: the terminals of the Atlas demo. `send` builds one request (PIN block,
 * MAC), sends it, checks the response MAC and prints one line; `run` executes a
 * scenario file line by line with PASS/FAIL per line, like a scheme certification
 * script. Both drive the library's sending core with one connection per address. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "acquirer.h"
#include "clock.h"
#include "conf.h"
#include "json.h"
#include "load.h"
#include "log.h"
#include "parse.h"
#include "stream.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define MAX_CONNS          16
/* After a line whose answer is not 00, its cards' balances are asked again every
 * BALANCE_POLL_MS until each is back where it was before the line (a reversal the switch
 * queued, e.g. a transfer's AFT after its OCT was declined, has then reached the issuer) or
 * BALANCE_POLL_FOR_MS have passed since the answer. */
#define BALANCE_POLL_MS     100u
#define BALANCE_POLL_FOR_MS 2000u

/* Exit codes of `send`. */
enum {
    EXIT_ANSWERED = 0,  /* a response arrived (whatever its DE 39) and its MAC is good */
    EXIT_USAGE = 1,     /* bad option, unknown terminal, state file problem */
    EXIT_TRANSPORT = 2, /* connect failure, timeout, bad framing, undecodable response */
    EXIT_BAD_MAC = 3,   /* a response arrived but its MAC is wrong or missing */
};

struct conn_ent {
    char key[96]; /* address + dialect + framing */
    struct sim_conn *c;
};

struct line_res {
    bool sent;
    struct sim_sent sent_info;
    struct sim_txn x;
    char term[9];
};

/* One card of a line's balances=: what its balance inquiries said (each is "?" when the inquiry
 * got no approval with a balance). */
struct bal_card {
    char pan[20];
    char ccy[4]; /* DE 54's currency, numeric; the demo card's until an inquiry answers */
    bool has_before, has_first, has_after;
    int64_t before; /* asked before the line was sent */
    int64_t first;  /* the first answer after the line's */
    int64_t after;  /* the last answer after the line's (polling: the one that ended it) */
};

/* Where a scenario line is: the request on the wire is a balance inquiry of its cards before
 * the line, the line itself, or an inquiry after its answer. */
enum run_phase {
    RP_BEFORE, /* asking c->bal[c->bal_k] before the line is sent */
    RP_LINE,   /* the line's own request */
    RP_AFTER,  /* asking c->bal[c->bal_k] after the line's answer (a round: every card) */
};

/* The options that are not a transaction's: one row each of global_table. */
struct global_opts {
    char terminals[4096]; /* "" = the built-in terminals only */
    char state_dir[256];
    bool json, dump;
    bool tls; /* --tls --ca F [--cert F --key F] [--server-name N] */
    char ca[256], cert[256], key[256], server_name[128];
};

struct cli {
    struct event_base *base;
    struct sim_engine *e;
    struct sim_terms terms;
    struct conn_ent conns[MAX_CONNS];
    struct global_opts g;
    const char *host; /* --host override */
    bool is_run;
    /* the transaction in progress */
    struct sim_term *t;
    struct sim_txn x;
    struct sim_sent sent;
    struct conn_ent *ce;
    unsigned timeout_ms;
    struct event *conn_timer;
    bool waiting_conn;
    uint8_t req_copy[SIM_MSG_MAX];
    size_t req_len;
    /* run */
    struct sim_scn scn;
    struct line_res *res;
    size_t idx;
    unsigned passed, failed;
    int exit_code;
    /* run: the line in progress, kept while its balance inquiries use t, x and sent */
    enum run_phase phase;
    struct sim_term *line_t;
    struct sim_txn line_x;
    struct sim_sent line_sent;
    char line_host[64];
    unsigned line_timeout_ms;
    bool line_has_out;           /* line_out holds the line's outcome */
    struct sim_outcome line_out; /* its msg and raw are NULL: only resp and latency are kept */
    char line_reason[128];       /* line_out.reason's text */
    char line_err[256];          /* the line's error, "" if none */
    struct bal_card bal[SIM_BALANCES_MAX];
    size_t nbal, bal_k;     /* the line's cards; the one being asked */
    bool bal_poll;          /* the answer was not 00: poll until the balances are back */
    bool bal_back;          /* the last round found every balance known before back */
    uint64_t bal_answer_ns; /* when the line's answer came (monotonic) */
    unsigned bal_waited_ms; /* how long after it the last round ended */
    struct event *poll_timer;
};

static void next_line(struct cli *c);
static void txn_done(struct cli *c, const struct sim_outcome *o, const char *err);
static void bal_ask(struct cli *c);

/* ------------------------------------------------------------------ output */

static void json_str(FILE *f, const char *k, const char *v, bool comma)
{
    fprintf(f, "%s\"%s\":", comma ? "," : "", k);
    at_json_fput(f, v);
}

static void dump_msg(struct cli *c, const char *title, const uint8_t *msg, size_t len)
{
    static uint8_t arena[ISO_ARENA_FOR(SIM_MSG_MAX)];
    static char text[16384];
    struct iso_msg m;
    struct iso_err ie;
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_unpack(c->t->dialect, msg, len, &m, &ie) != 0) {
        printf("%s: does not decode: %s\n", title, ie.reason);
        return;
    }
    (void)iso_describe(c->t->dialect, &m, 0, text, sizeof text);
    printf("--- %s (%zu bytes, masked)\n%s", title, len, text);
    if (len && text[strlen(text) - 1] != '\n')
        printf("\n");
}

/* A transfer's recipient as printed: a PAN masked (first 6, last 4), a mobile number with its
 * first three digits and its last three, the rest as stars. out holds 24 bytes. */
static void mask_recipient(const char *r, char out[24])
{
    size_t n = strlen(r);
    if (r[0] != '+' || n < 9 || n > 16) {
        at_mask_pan(r, n, out);
        return;
    }
    memcpy(out, r, 4);
    memset(out + 4, '*', n - 7);
    memcpy(out + n - 3, r + n - 3, 4); /* the NUL too */
}

/* What a transfer's DE 44 says, in words (docs/acquirer-interface.md): the step that failed and
 * what became of the sender's debit. "" for any other DE 44. */
static const char *transfer_leg_text(const char *info)
{
    if (strncmp(info, "OCT", 3) == 0)
        return " (the recipient's side failed: the sender's debit was reversed)";
    if (strncmp(info, "AFT", 3) == 0)
        return " (the sender's issuer declined: nothing moved)";
    if (strncmp(info, "XFR", 3) == 0)
        return " (refused by the switch: nothing moved)";
    return "";
}

/* The answer's conversion and transfer fields for the readable line, each only when present:
 * " recipient gets 758 XOF" (a transfer) or " billed 12.34 EUR" (DE 6 in DE 51's currency),
 * " rate 655.957" (DE 10), " fee 1.00 MAD" (DE 28, in the request's currency), " info OCT57"
 * (DE 44) and " settlement 1206" (DE 15, MMDD). out gets "" when there is none. */
static void answer_extras(const struct sim_txn *x, const struct at_currency *ccy,
                          const struct sim_resp *r, char *out, size_t cap)
{
    char a[48];
    size_t n = 0;
    out[0] = '\0';
    if (r->has_billing) {
        sim_amount_format(r->billing, at_currency_find(r->billing_ccy), a, sizeof a);
        n += (size_t)snprintf(out + n, cap - n, " %s %s",
                              x->type == SIM_T_TRANSFER ? "recipient gets" : "billed", a);
    }
    if (r->rate[0] && n < cap) {
        at_format_minor(strtoull(r->rate + 1, NULL, 10), (unsigned)(r->rate[0] - '0'), a, sizeof a);
        n += (size_t)snprintf(out + n, cap - n, " rate %s", a);
    }
    if (r->has_fee && n < cap) {
        sim_amount_format((uint64_t)(r->fee < 0 ? -r->fee : r->fee), ccy, a, sizeof a);
        n += (size_t)snprintf(out + n, cap - n, " fee %s%s", r->fee < 0 ? "-" : "", a);
    }
    if (r->info[0] && n < cap)
        n += (size_t)snprintf(out + n, cap - n, " info %s%s", r->info, transfer_leg_text(r->info));
    if (r->settle_date[0] && n < cap)
        snprintf(out + n, cap - n, " settlement %s", r->settle_date);
}

/* A balance in minor units of the numeric currency ccy, "-" first when negative; "?" when
 * unknown. */
static const char *bal_amount(bool known, int64_t v, const char *ccy, char *out, size_t cap)
{
    const struct at_currency *cur = at_currency_find(ccy);
    char num[32];
    if (!known)
        return "?";
    at_format_minor(v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v,
                    cur ? (unsigned)cur->exponent : 0, num, sizeof num);
    snprintf(out, cap, "%s%s", v < 0 ? "-" : "", num);
    return out;
}

/* The line's balances for the readable line: " | 489001******0012 1000.00 -> 984.90 MAD" per
 * card (masked PAN, before -> after, "?" for an inquiry that failed; before -> first -> after
 * when polling saw a value in between), then, when the answer was not 00, how long it took for
 * the balances to be back (" | back after 120 ms", or " | not back after 2000 ms"). */
static void balances_text(const struct cli *c, char *out, size_t cap)
{
    size_t n = 0;
    bool known = false;
    out[0] = '\0';
    for (size_t i = 0; i < c->nbal && n < cap; i++) {
        const struct bal_card *b = &c->bal[i];
        const struct at_currency *cur = at_currency_find(b->ccy);
        char pan[24], a[40], f[40], z[40], mid[48] = "";
        at_mask_pan(b->pan, strlen(b->pan), pan);
        if (b->has_first && b->has_after && b->first != b->after)
            snprintf(mid, sizeof mid, "%s -> ", bal_amount(true, b->first, b->ccy, f, sizeof f));
        n += (size_t)snprintf(out + n, cap - n, " | %s %s -> %s%s %s", pan,
                              bal_amount(b->has_before, b->before, b->ccy, a, sizeof a), mid,
                              bal_amount(b->has_after, b->after, b->ccy, z, sizeof z),
                              cur ? cur->alpha : b->ccy);
        known |= b->has_before;
    }
    if (c->bal_poll && known && n < cap)
        snprintf(out + n, cap - n, " | %s after %u ms", c->bal_back ? "back" : "not back",
                 c->bal_waited_ms);
}

/* The line's balances as JSON fields: "balances":[{"pan","currency","before_minor",
 * "after_minor"(, "first_after_minor")}] (null for an inquiry that failed), and when the answer
 * was not 00 "balances_polled_ms" and "balances_back". */
static void balances_json(const struct cli *c, FILE *f)
{
    fprintf(f, ",\"balances\":[");
    for (size_t i = 0; i < c->nbal; i++) {
        const struct bal_card *b = &c->bal[i];
        const struct at_currency *cur = at_currency_find(b->ccy);
        char pan[24];
        at_mask_pan(b->pan, strlen(b->pan), pan);
        fprintf(f, "%s{", i ? "," : "");
        json_str(f, "pan", pan, false);
        json_str(f, "currency", cur ? cur->alpha : b->ccy, true);
        if (b->has_before)
            fprintf(f, ",\"before_minor\":%lld", (long long)b->before);
        else
            fprintf(f, ",\"before_minor\":null");
        if (b->has_after)
            fprintf(f, ",\"after_minor\":%lld", (long long)b->after);
        else
            fprintf(f, ",\"after_minor\":null");
        if (b->has_first && b->has_after && b->first != b->after)
            fprintf(f, ",\"first_after_minor\":%lld", (long long)b->first);
        fprintf(f, "}");
    }
    fprintf(f, "]");
    if (c->bal_poll)
        fprintf(f, ",\"balances_polled_ms\":%u,\"balances_back\":%s", c->bal_waited_ms,
                c->bal_back ? "true" : "false");
}

/* One result: a readable line (or a JSON object) for the request x that terminal t sent as
 * sent (t NULL and sent empty when it never left). prefix is "PASS line 3" etc. A scenario
 * line with balances= gets them at the end (c->bal). */
static void print_result(struct cli *c, const char *prefix, const struct sim_term *t,
                         const struct sim_txn *x, const struct sim_sent *sent,
                         const struct sim_outcome *o, const char *err, const char *fail_why)
{
    char pan[24] = "", to[24] = "", amount[48] = "-", bal[48] = "", extras[320] = "";
    bool echo = x->type == SIM_T_ECHO || x->type == SIM_T_KEYS;
    if (!echo)
        at_mask_pan(x->pan, strlen(x->pan), pan);
    if (x->recipient[0])
        mask_recipient(x->recipient, to);
    const struct at_currency *ccy = at_currency_find(x->currency[0] ? x->currency : "504");
    if (!echo && x->type != SIM_T_BALANCE)
        sim_amount_format(x->amount, ccy, amount, sizeof amount);
    const struct sim_resp *r = o && o->status == SIM_ANSWERED ? &o->resp : NULL;
    if (r && r->has_balance) {
        const struct at_currency *bc = at_currency_find(r->balance_ccy);
        char tmp[40];
        sim_amount_format((uint64_t)(r->balance < 0 ? -r->balance : r->balance), bc, tmp,
                          sizeof tmp);
        snprintf(bal, sizeof bal, "%s%s", r->balance < 0 ? "-" : "", tmp);
    }
    if (r)
        answer_extras(x, ccy, r, extras, sizeof extras);
    double ms = o ? (double)o->latency_ns / 1e6 : 0;
    const char *mti = sent->mti[0] ? sent->mti : sim_type_mti(x->type);
    if (c->g.json) {
        printf("{");
        if (c->is_run) {
            json_str(stdout, "result", strncmp(prefix, "PASS", 4) == 0 ? "PASS" : "FAIL", false);
            printf(",\"line\":%u", c->scn.lines[c->idx].lineno);
        } else {
            json_str(stdout, "result", r ? "answered" : "error", false);
        }
        json_str(stdout, "terminal", t ? t->id : "", true);
        json_str(stdout, "type", sim_type_name(x->type), true);
        json_str(stdout, "mti", mti, true);
        json_str(stdout, "stan", sent->stan, true);
        json_str(stdout, "de7", sent->de7, true);
        if (!echo)
            json_str(stdout, "pan", pan, true);
        if (!echo && x->type != SIM_T_BALANCE) {
            printf(",\"amount_minor\":%llu", (unsigned long long)x->amount);
            json_str(stdout, "currency", ccy ? ccy->alpha : x->currency, true);
        }
        if (to[0])
            json_str(stdout, "to", to, true);
        if (r) {
            json_str(stdout, "response_mti", r->mti, true);
            json_str(stdout, "rc", r->rc, true);
            json_str(stdout, "rc_text", r->rc[0] ? sim_rc_text(r->rc) : "no DE 39", true);
            if (r->auth[0])
                json_str(stdout, "auth_code", r->auth, true);
            if (r->has_balance) {
                printf(",\"balance_minor\":%lld", (long long)r->balance);
                json_str(stdout, "balance_currency", r->balance_ccy, true);
            }
            if (r->has_billing) {
                printf(",\"billing_minor\":%llu", (unsigned long long)r->billing);
                json_str(stdout, "billing_currency", r->billing_ccy, true);
            }
            if (r->rate[0])
                json_str(stdout, "rate", r->rate, true);
            if (r->has_fee)
                printf(",\"fee_minor\":%lld", (long long)r->fee);
            if (r->info[0])
                json_str(stdout, "info", r->info, true);
            if (r->settle_date[0])
                json_str(stdout, "settlement_date", r->settle_date, true);
            json_str(stdout, "mac", sim_mac_status_name(r->mac), true);
            const char *arpc = sim_chip_arpc_status(sent, r);
            if (arpc)
                json_str(stdout, "arpc", arpc, true);
            printf(",\"latency_ms\":%.3f", ms);
        } else {
            json_str(stdout, "error", err ? err : o && o->reason ? o->reason : "failed", true);
        }
        if (fail_why)
            json_str(stdout, "why", fail_why, true);
        if (c->is_run && c->nbal)
            balances_json(c, stdout);
        printf("}\n");
    } else {
        printf("%s%s%s %s %s", prefix, prefix[0] ? " " : "", t ? t->id : "-", mti,
               sim_type_name(x->type));
        if (!echo)
            printf(" %s", pan);
        if (!echo && x->type != SIM_T_BALANCE)
            printf(" %s", amount);
        if (to[0])
            printf(" to %s", to);
        if (sent->stan[0])
            printf(" stan %s", sent->stan);
        if (r) {
            printf(" -> %s rc %s (%s)", r->mti, r->rc[0] ? r->rc : "--",
                   r->rc[0] ? sim_rc_text(r->rc) : "no DE 39");
            if (r->auth[0])
                printf(" auth %s", r->auth);
            if (bal[0])
                printf(" balance %s", bal);
            printf("%s", extras);
            const char *arpc = sim_chip_arpc_status(sent, r);
            if (arpc)
                printf(" arpc=%s", arpc);
            printf(" MAC %s %.2f ms", sim_mac_status_name(r->mac), ms);
            if (r->mac == SIM_MAC_BAD)
                printf(" [RESPONSE MAC FAILED VERIFICATION]");
        } else {
            printf(" -> ERROR: %s", err ? err : o && o->reason ? o->reason : "failed");
        }
        if (fail_why)
            printf(" [%s]", fail_why);
        if (c->is_run && c->nbal) {
            char text[400];
            balances_text(c, text, sizeof text);
            printf("%s", text);
        }
        printf("\n");
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ connections */

static void on_conn(void *arg, struct sim_conn *conn, bool up, const char *reason);

static void fire(struct cli *c);

static struct conn_ent *conn_for(struct cli *c, const char *addr, const struct sim_term *t,
                                 char *err, size_t errcap)
{
    char key[96];
    snprintf(key, sizeof key, "%.60s|%.20s|%c", addr, t->dialect->name, (char)('0' + t->framing));
    struct conn_ent *freeslot = NULL;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (c->conns[i].c && strcmp(c->conns[i].key, key) == 0)
            return &c->conns[i];
        if (!c->conns[i].c && !freeslot)
            freeslot = &c->conns[i];
    }
    if (!freeslot) {
        snprintf(err, errcap, "too many distinct addresses");
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *why = NULL;
    if (!at_parse_hostport(addr, &ss, &sl, &why)) {
        snprintf(err, errcap, "address %s: %s", addr, why ? why : "invalid");
        return NULL;
    }
    snprintf(freeslot->key, sizeof freeslot->key, "%s", key);
    freeslot->c = sim_conn_open(c->e, (struct sockaddr *)&ss, sl, t, on_conn, c);
    if (!freeslot->c) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    return freeslot;
}

static void on_conn(void *arg, struct sim_conn *conn, bool up, const char *reason)
{
    struct cli *c = arg;
    struct conn_ent *ce = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        if (c->conns[i].c == conn)
            ce = &c->conns[i];
    if (up) {
        if (c->waiting_conn && c->ce == ce) {
            c->waiting_conn = false;
            evtimer_del(c->conn_timer);
            fire(c);
        }
        return;
    }
    /* Down: forget the connection (a later line reconnects). reason lives in the
     * connection: keep a copy before freeing it. */
    char why_copy[96];
    snprintf(why_copy, sizeof why_copy, "%s", reason ? reason : "closed");
    reason = why_copy;
    if (ce)
        ce->c = NULL;
    sim_conn_free(conn);
    if (c->waiting_conn && c->ce == ce) {
        c->waiting_conn = false;
        evtimer_del(c->conn_timer);
        char why[256];
        size_t alen = strcspn(ce->key, "|"); /* the key is address|dialect|framing */
        snprintf(why, sizeof why, "cannot connect to %.*s: %s", (int)alen, ce->key, reason);
        txn_done(c, NULL, why);
    }
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct cli *c = arg;
    if (!c->waiting_conn)
        return;
    c->waiting_conn = false;
    if (c->ce && c->ce->c) {
        struct sim_conn *conn = c->ce->c;
        c->ce->c = NULL;
        sim_conn_free(conn);
    }
    txn_done(c, NULL, "connect timeout");
}

/* ------------------------------------------------------------------ one transaction */

static void on_done(void *arg, struct sim_req *r, const struct sim_outcome *o)
{
    struct cli *c = arg;
    if (c->g.dump && o->status == SIM_ANSWERED)
        dump_msg(c, c->is_run && c->phase != RP_LINE ? "balance inquiry response" : "response",
                 o->raw, o->raw_len);
    txn_done(c, o, NULL);
}

/* Builds and sends c->x on the (now up) connection. */
static void fire(struct cli *c)
{
    uint8_t *buf;
    size_t cap, len = 0;
    char err[200];
    struct sim_req *r = sim_req_get(c->e, &buf, &cap);
    if (!r) {
        txn_done(c, NULL, "no free request slot");
        return;
    }
    if (sim_term_build_request(c->t, &c->x, buf, cap, &len, &c->sent, err, sizeof err) != 0) {
        sim_req_put(c->e, r);
        c->exit_code = EXIT_USAGE;
        txn_done(c, NULL, err);
        return;
    }
    memcpy(c->req_copy, buf, len);
    c->req_len = len;
    if (c->g.dump)
        dump_msg(c, c->is_run && c->phase != RP_LINE ? "balance inquiry request" : "request", buf,
                 len);
    if (sim_req_send(c->ce->c, r, len, &c->sent, c->t, c->timeout_ms, 0, on_done, c) != 0)
        txn_done(c, NULL, "connection not usable");
}

/* Starts c->x on c->t: connects if needed, then fires. */
static void start(struct cli *c, const char *host_opt, unsigned timeout_ms)
{
    char err[200];
    memset(&c->sent, 0, sizeof c->sent);
    c->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    const char *addr = host_opt && host_opt[0] ? host_opt : c->host ? c->host : c->t->address;
    c->ce = conn_for(c, addr, c->t, err, sizeof err);
    if (!c->ce) {
        txn_done(c, NULL, err);
        return;
    }
    if (sim_conn_up(c->ce->c)) {
        fire(c);
        return;
    }
    c->waiting_conn = true;
    struct timeval tv = { .tv_sec = c->timeout_ms / 1000,
                          .tv_usec = (c->timeout_ms % 1000) * 1000 };
    evtimer_add(c->conn_timer, &tv);
}

/* ------------------------------------------------------------------ send */

static void send_done(struct cli *c, const struct sim_outcome *o, const char *err)
{
    if (!o || o->status != SIM_ANSWERED) {
        if (c->exit_code != EXIT_USAGE)
            c->exit_code = EXIT_TRANSPORT;
        print_result(c, "", c->t, &c->x, &c->sent, o, err, NULL);
    } else {
        c->exit_code = sim_mac_acceptable(&o->resp) ? EXIT_ANSWERED : EXIT_BAD_MAC;
        char kerr[160];
        /* a key download answered 00: the terminal's new keys, for its next requests */
        if (c->x.type == SIM_T_KEYS && strcmp(o->resp.rc, "00") == 0 &&
            sim_term_apply_keys(c->t, o->resp.keys, kerr, sizeof kerr) != 0) {
            print_result(c, "", c->t, &c->x, &c->sent, o, kerr, NULL);
            c->exit_code = EXIT_BAD_MAC;
        } else {
            print_result(c, "", c->t, &c->x, &c->sent, o, NULL, NULL);
        }
    }
    event_base_loopexit(c->base, NULL);
}

/* ------------------------------------------------------------------ run */

/* A line is run in up to three steps (c->phase): with balances= its cards' balances are asked
 * first (RP_BEFORE, one inquiry after the other), then the line is sent (RP_LINE), then, once it
 * is answered, its cards are asked again (RP_AFTER) — once, or, when the answer was not 00, in
 * rounds every BALANCE_POLL_MS until each balance is back where it was (or BALANCE_POLL_FOR_MS
 * have passed). Only then is the line printed, balances included, and counted. The inquiries
 * are not scenario lines: they are never counted, and one that fails shows "?". */

/* Prints the line (c->line_*, its balances) and counts it, then runs the next. */
static void line_finish(struct cli *c)
{
    struct sim_scn_line *l = &c->scn.lines[c->idx];
    struct line_res *lr = &c->res[c->idx];
    const struct sim_outcome *o = c->line_has_out ? &c->line_out : NULL;
    const char *err = c->line_err[0] ? c->line_err : NULL;
    lr->sent = c->line_sent.stan[0] != '\0';
    lr->sent_info = c->line_sent;
    lr->x = c->line_x;
    snprintf(lr->term, sizeof lr->term, "%s", c->line_t ? c->line_t->id : "");
    char prefix[48], why[96] = "";
    bool pass = false;
    if (o && o->status == SIM_ANSWERED) {
        bool rc_ok = strcmp(o->resp.rc, l->o.expect) == 0;
        bool mac_ok = l->o.mac_any || sim_mac_acceptable(&o->resp);
        /* a chip line's ARPC, when the answer carries one, must verify */
        const char *arpc = sim_chip_arpc_status(&c->line_sent, &o->resp);
        bool arpc_ok = !arpc || strcmp(arpc, "bad") != 0;
        pass = rc_ok && mac_ok && arpc_ok;
        if (!rc_ok)
            snprintf(why, sizeof why, "expected %s", l->o.expect);
        else if (!mac_ok)
            snprintf(why, sizeof why, "response MAC %s", sim_mac_status_name(o->resp.mac));
        else if (!arpc_ok)
            snprintf(why, sizeof why, "ARPC (DE 55 tag 91) does not verify");
    } else {
        snprintf(why, sizeof why, "expected %s", l->o.expect);
    }
    snprintf(prefix, sizeof prefix, "%s line %u", pass ? "PASS" : "FAIL", l->lineno);
    print_result(c, prefix, c->line_t, &c->line_x, &c->line_sent, o, err, pass ? NULL : why);
    if (pass)
        c->passed++;
    else
        c->failed++;
    c->idx++;
    next_line(c);
}

/* Sends the line itself (after its balances before, if any). */
static void line_send(struct cli *c)
{
    c->phase = RP_LINE;
    c->t = c->line_t;
    c->x = c->line_x;
    start(c, c->line_host, c->line_timeout_ms);
}

/* The end of a round of inquiries after the line's answer: another round in BALANCE_POLL_MS
 * when polling and a balance known before is not back yet, else the line is done. */
static void bal_round_done(struct cli *c)
{
    bool known = false, back = true;
    for (size_t i = 0; i < c->nbal; i++) {
        const struct bal_card *b = &c->bal[i];
        if (!b->has_before)
            continue; /* nothing to be back to */
        known = true;
        if (!b->has_after || b->after != b->before)
            back = false;
    }
    uint64_t waited_ms = (at_mono_ns() - c->bal_answer_ns) / 1000000u;
    c->bal_waited_ms = waited_ms > 999999u ? 999999u : (unsigned)waited_ms;
    c->bal_back = known && back;
    if (c->bal_poll && known && !back && waited_ms + BALANCE_POLL_MS <= BALANCE_POLL_FOR_MS) {
        struct timeval tv = { .tv_sec = 0, .tv_usec = BALANCE_POLL_MS * 1000 };
        evtimer_add(c->poll_timer, &tv);
        return;
    }
    line_finish(c);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    struct cli *c = arg;
    c->bal_k = 0;
    bal_ask(c);
}

/* The answer (or failure: o NULL or not answered) of the inquiry of c->bal[c->bal_k]: kept when
 * it is an approval with a balance whose response MAC verifies; anything else is "?" for that
 * card. Then the next card, or the next step. */
static void bal_done(struct cli *c, const struct sim_outcome *o)
{
    struct bal_card *b = &c->bal[c->bal_k];
    bool ok = o && o->status == SIM_ANSWERED && sim_mac_acceptable(&o->resp) &&
              strcmp(o->resp.rc, "00") == 0 && o->resp.has_balance;
    if (ok)
        memcpy(b->ccy, o->resp.balance_ccy, sizeof b->ccy);
    if (c->phase == RP_BEFORE) {
        b->has_before = ok;
        b->before = ok ? o->resp.balance : 0;
    } else {
        b->has_after = ok;
        b->after = ok ? o->resp.balance : 0;
        if (ok && !b->has_first) {
            b->has_first = true;
            b->first = b->after;
        }
    }
    if (++c->bal_k < c->nbal) {
        bal_ask(c);
        return;
    }
    if (c->phase == RP_BEFORE)
        line_send(c);
    else
        bal_round_done(c);
}

/* Sends the balance inquiry (0100, processing code 30) of c->bal[c->bal_k] from the line's
 * terminal, with the card's demo PIN, expiry and currency (sim_opts_resolve's defaults for a
 * demo card), to the line's address, with the line's timeout. */
static void bal_ask(struct cli *c)
{
    struct sim_opts o;
    char err[200];
    memset(&o, 0, sizeof o);
    o.has_type = true;
    o.type = SIM_T_BALANCE;
    snprintf(o.pan, sizeof o.pan, "%s", c->bal[c->bal_k].pan);
    snprintf(o.terminal, sizeof o.terminal, "%s", c->line_t->id);
    memset(&c->sent, 0, sizeof c->sent);
    if (sim_opts_resolve(&o, &c->terms, &c->x, &c->t, err, sizeof err) != 0) {
        bal_done(c, NULL); /* not reachable: a demo card on a known terminal */
        return;
    }
    start(c, c->line_host, c->line_timeout_ms);
}

/* The line's answer (o), or why it has none (err; o NULL or not answered): kept, then its
 * balances are asked after it, or it is printed at once when it has none. */
static void run_done(struct cli *c, const struct sim_outcome *o, const char *err)
{
    c->line_sent = c->sent;
    c->line_has_out = o != NULL;
    if (o) {
        c->line_out = *o;
        c->line_out.msg = NULL;
        c->line_out.raw = NULL;
        c->line_out.raw_len = 0;
        if (o->reason) {
            snprintf(c->line_reason, sizeof c->line_reason, "%s", o->reason);
            c->line_out.reason = c->line_reason;
        }
    }
    snprintf(c->line_err, sizeof c->line_err, "%s", err ? err : "");
    if (!c->nbal) {
        line_finish(c);
        return;
    }
    c->phase = RP_AFTER;
    c->bal_poll = !(o && o->status == SIM_ANSWERED && strcmp(o->resp.rc, "00") == 0);
    c->bal_answer_ns = at_mono_ns();
    c->bal_k = 0;
    bal_ask(c);
}

static void next_line(struct cli *c)
{
    char err[256];
    while (c->idx < c->scn.n) {
        struct sim_scn_line *l = &c->scn.lines[c->idx];
        struct sim_opts o = l->o;
        c->phase = RP_LINE;
        c->nbal = 0; /* a line that cannot be sent asks no balances */
        if (l->original_index >= 0) {
            const struct line_res *orig = &c->res[l->original_index];
            if (!orig->sent) {
                memset(&c->line_x, 0, sizeof c->line_x);
                c->line_x.type = o.type;
                c->line_t = NULL;
                memset(&c->sent, 0, sizeof c->sent);
                run_done(c, NULL, "the original line was never sent");
                return;
            }
            if (!o.terminal[0])
                snprintf(o.terminal, sizeof o.terminal, "%s", orig->term);
            if (!o.pan[0])
                snprintf(o.pan, sizeof o.pan, "%s", orig->x.pan);
            if (!o.amount[0] && !o.has_amount_minor) {
                o.has_amount_minor = true;
                o.amount_minor = orig->x.amount;
            }
            if (!o.currency[0])
                snprintf(o.currency, sizeof o.currency, "%s", orig->x.currency);
            if (!o.proc[0])
                snprintf(o.proc, sizeof o.proc, "%s", orig->sent_info.proc);
            if (!o.expiry[0])
                snprintf(o.expiry, sizeof o.expiry, "%s", orig->x.expiry);
            snprintf(o.orig_mti, sizeof o.orig_mti, "%s", orig->sent_info.mti);
            o.orig_stan = (uint32_t)strtoul(orig->sent_info.stan, NULL, 10);
            snprintf(o.orig_time, sizeof o.orig_time, "%s", orig->sent_info.de7);
        }
        if (sim_opts_resolve(&o, &c->terms, &c->line_x, &c->line_t, err, sizeof err) != 0) {
            /* checked before the run started; only reachable through original= data */
            c->line_t = NULL;
            memset(&c->sent, 0, sizeof c->sent);
            run_done(c, NULL, err);
            return;
        }
        snprintf(c->line_host, sizeof c->line_host, "%s", o.host);
        c->line_timeout_ms = (unsigned)o.timeout_ms;
        memset(c->bal, 0, sizeof c->bal);
        for (size_t i = 0; i < o.n_balances; i++) {
            const struct sim_demo_card *card = sim_demo_card_find(o.balance_pan[i]);
            snprintf(c->bal[i].pan, sizeof c->bal[i].pan, "%s", o.balance_pan[i]);
            snprintf(c->bal[i].ccy, sizeof c->bal[i].ccy, "%s", card ? card->currency : "");
        }
        c->nbal = o.n_balances;
        if (c->nbal) {
            c->phase = RP_BEFORE;
            c->bal_k = 0;
            bal_ask(c);
        } else {
            line_send(c);
        }
        return;
    }
    if (c->g.json)
        printf("{\"passed\":%u,\"failed\":%u,\"unmatched_responses\":%llu}\n", c->passed, c->failed,
               (unsigned long long)sim_engine_unmatched(c->e));
    else if (sim_engine_unmatched(c->e))
        printf("%u passed, %u failed (%llu late or unmatched responses ignored)\n", c->passed,
               c->failed, (unsigned long long)sim_engine_unmatched(c->e));
    else
        printf("%u passed, %u failed\n", c->passed, c->failed);
    fflush(stdout);
    c->exit_code = c->failed ? 1 : 0;
    event_base_loopexit(c->base, NULL);
}

static void txn_done(struct cli *c, const struct sim_outcome *o, const char *err)
{
    if (!c->is_run)
        send_done(c, o, err);
    else if (c->phase == RP_LINE)
        run_done(c, o, err);
    else
        bal_done(c, o);
}

/* ------------------------------------------------------------------ command line */

#define O(f) offsetof(struct global_opts, f), sizeof(((struct global_opts *)0)->f)
static const struct at_setting global_table[] = {
    { "terminals", AT_SET_STR, O(terminals), NULL, 0, AT_SET_MINLEN(1),
      "extra terminal profiles ([terminal ID] sections, docs/acquirer-sim.md)" },
    { "state-dir", AT_SET_STR, O(state_dir), SIM_STATE_DIR_DEFAULT, 0, 0,
      "the terminals' STAN/KSN state files (default $" SIM_STATE_DIR_ENV " when set)" },
    { "json", AT_SET_BOOL, O(json), "no", 0, 0, "one JSON object per result" },
    { "dump", AT_SET_BOOL, O(dump), "no", 0, 0, "print the masked request and response" },
    { "tls", AT_SET_BOOL, O(tls), "no", 0, 0,
      "connect over TLS 1.2/1.3 (switchd's TLS listener, e.g. 8585 in the demo)" },
    { "ca", AT_SET_STR, O(ca), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: CA file verifying the switch's certificate" },
    { "cert", AT_SET_STR, O(cert), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: the terminal's client certificate (mutual authentication)" },
    { "key", AT_SET_STR, O(key), NULL, 0, AT_SET_MINLEN(1), "with --tls: the key of --cert" },
    { "server-name", AT_SET_STR, O(server_name), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: the name the switch's certificate must carry (default: the IP address "
      "connected to)" },
};
#undef O
#define N(t) (sizeof(t) / sizeof((t)[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: acquirer-sim [global options] send [options]\n"
               "       acquirer-sim [global options] run FILE.scn\n"
               "       acquirer-sim load [options]   (acquirer-sim load --help)\n"
               "global options:\n");
    at_settings_print_options(global_table, N(global_table), "--", f);
    fprintf(f, "send options (scenario lines: the same as key=value words, flags bare or "
               "flag=yes|no):\n");
    sim_opts_usage(f);
    fprintf(f, "exit status of send: 0 answered (any DE 39), 1 usage, 2 transport error/timeout/\n"
               "bad framing, 3 response MAC wrong or missing. run: 0 all passed, 1 a line failed,\n"
               "2 unusable scenario file or transport setup.\n");
}

/* Reads the command line into c->g (global options), *opts (the transaction options of send;
 * --host for run too), *cmd and, for run, *scn_path; options and words in any order. Returns
 * 0; 1 when --help was asked; -1 after saying what is wrong on stderr. */
static int parse_command_line(int argc, char **argv, struct cli *c, struct sim_opts *opts,
                              const char **cmd, const char **scn_path)
{
    char err[512], what[96];
    if (at_settings_defaults(global_table, N(global_table), &c->g, err, sizeof err) != 0)
        return -1;
    const char *env_dir = getenv(SIM_STATE_DIR_ENV);
    if (env_dir && env_dir[0] &&
        at_settings_set(global_table, N(global_table), &c->g, "state-dir", env_dir, err,
                        sizeof err) != 0) {
        fprintf(stderr, "acquirer-sim: $%s: %s\n", SIM_STATE_DIR_ENV, err);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            if (!*cmd) {
                *cmd = a;
            } else if (strcmp(*cmd, "run") == 0 && !*scn_path) {
                *scn_path = a;
            } else {
                fprintf(stderr, "acquirer-sim: unexpected argument '%s'\n", a);
                return -1;
            }
            continue;
        }
        const struct at_setting *row;
        const char *value;
        int found = at_settings_arg(global_table, N(global_table), argc, argv, &i, &row, &value,
                                    err, sizeof err);
        if (found > 0 && at_setting_store(row, &c->g, value, err, sizeof err) != 0) {
            snprintf(err, sizeof err, "%s: expected %s", row->name,
                     at_setting_describe(row, what, sizeof what));
            found = -1;
        }
        if (found == 0)
            found = sim_opts_arg(opts, argc, argv, &i, err, sizeof err);
        if (found == 0)
            snprintf(err, sizeof err, "unknown option '%.40s'", a + 2);
        if (found <= 0) {
            fprintf(stderr, "acquirer-sim: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        if (cap >= (16u << 20)) {
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf)
        return -1;
    *out = buf;
    *len = n;
    return 0;
}

/* Counts, per terminal, how many transactions the scenario sends, for the reservation: each
 * line, and the balance inquiries before and after it (polling may take more: the terminal
 * then reserves another block). */
static uint32_t scn_count_for(const struct sim_scn *s, const char *tid)
{
    uint32_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *t = s->lines[i].o.terminal[0] ? s->lines[i].o.terminal : "TERM0001";
        if (strcmp(t, tid) == 0 || s->lines[i].original_index >= 0)
            n += 1 + 2 * s->lines[i].o.n_balances;
    }
    return n;
}

int main(int argc, char **argv)
{
    /* The load harness has its own options (load.c). */
    if (argc > 1 && strcmp(argv[1], "load") == 0)
        return load_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "load-seed") == 0)
        return load_seed_main(argc, argv);
    struct cli c;
    memset(&c, 0, sizeof c);
    /* A switch closing mid-write must surface as a connection error, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    struct sim_opts opts;
    memset(&opts, 0, sizeof opts);
    char err[512];
    const char *cmd = NULL, *scn_path = NULL;
    int arc = parse_command_line(argc, argv, &c, &opts, &cmd, &scn_path);
    if (arc > 0) {
        usage(stdout);
        return 0;
    }
    if (arc < 0)
        return EXIT_USAGE;
    if (!cmd || (strcmp(cmd, "send") != 0 && strcmp(cmd, "run") != 0)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    c.is_run = strcmp(cmd, "run") == 0;
    if (c.is_run && !scn_path) {
        fprintf(stderr, "acquirer-sim: run needs a scenario file\n");
        return 2;
    }
    if (opts.host[0])
        c.host = opts.host;

    if (sim_terms_builtin(&c.terms, err, sizeof err) != 0 ||
        (c.g.terminals[0] && sim_terms_load(&c.terms, c.g.terminals, err, sizeof err) != 0)) {
        fprintf(stderr, "acquirer-sim: %s\n", err);
        sim_terms_free(&c.terms);
        return c.is_run ? 2 : EXIT_USAGE;
    }

    int rc = EXIT_USAGE;
    if (c.is_run) {
        char *text = NULL;
        size_t len = 0;
        if (read_file(scn_path, &text, &len) != 0) {
            fprintf(stderr, "acquirer-sim: %s: %s\n", scn_path, strerror(errno));
            sim_terms_free(&c.terms);
            return 2;
        }
        int prc = sim_scn_parse(text, len, scn_path, &c.scn, err, sizeof err);
        free(text);
        if (prc != 0) {
            fprintf(stderr, "acquirer-sim: %s\n", err);
            sim_terms_free(&c.terms);
            return 2;
        }
        /* Resolve every line now so a typo fails before anything is sent. */
        for (size_t i = 0; i < c.scn.n; i++) {
            struct sim_opts o = c.scn.lines[i].o;
            struct sim_txn x;
            struct sim_term *t;
            if (c.scn.lines[i].original_index >= 0 && !o.orig_stan) {
                o.orig_stan = 1; /* DE 90 comes from the original at run time */
                snprintf(o.orig_time, sizeof o.orig_time, "0101000000");
            }
            if (c.scn.lines[i].original_index >= 0 && !o.amount[0] && !o.has_amount_minor) {
                o.has_amount_minor = true; /* inherited from the original at run time */
                if (!o.terminal[0])
                    snprintf(o.terminal, sizeof o.terminal, "%s",
                             c.scn.lines[c.scn.lines[i].original_index].o.terminal);
            }
            if (sim_opts_resolve(&o, &c.terms, &x, &t, err, sizeof err) != 0) {
                fprintf(stderr, "acquirer-sim: %s:%u: %s\n", scn_path, c.scn.lines[i].lineno, err);
                sim_scn_free(&c.scn);
                sim_terms_free(&c.terms);
                return 2;
            }
        }
        c.res = calloc(c.scn.n, sizeof *c.res);
        if (!c.res) {
            sim_scn_free(&c.scn);
            sim_terms_free(&c.terms);
            return 2;
        }
    }

    /* Reserve STANs/KSNs of the terminals this invocation may use. */
    for (size_t i = 0; i < c.terms.n; i++) {
        struct sim_term *t = c.terms.t[i];
        uint32_t n = 0;
        if (c.is_run)
            n = scn_count_for(&c.scn, t->id);
        else if (strcmp(t->id, opts.terminal[0] ? opts.terminal : "TERM0001") == 0)
            n = 1;
        if (n && sim_term_reserve(t, c.g.state_dir, n, err, sizeof err) != 0) {
            fprintf(stderr, "acquirer-sim: %s\n", err);
            rc = c.is_run ? 2 : EXIT_USAGE;
            goto out;
        }
    }

    c.base = at_event_base_new();
    if (!c.base || sim_engine_new(c.base, 16, &c.e) != 0 ||
        !(c.conn_timer = evtimer_new(c.base, on_conn_timeout, &c)) ||
        !(c.poll_timer = evtimer_new(c.base, on_poll_timer, &c))) {
        fprintf(stderr, "acquirer-sim: event loop setup failed\n");
        rc = 2;
        goto out;
    }
    if (c.g.tls &&
        sim_engine_tls(c.e, c.g.ca, c.g.cert, c.g.key, c.g.server_name, err, sizeof err) != 0) {
        fprintf(stderr, "acquirer-sim: %s\n", err);
        rc = c.is_run ? 2 : EXIT_USAGE;
        goto out;
    }
    c.exit_code = EXIT_TRANSPORT;
    if (c.is_run) {
        next_line(&c);
    } else {
        if (sim_opts_resolve(&opts, &c.terms, &c.x, &c.t, err, sizeof err) != 0) {
            fprintf(stderr, "acquirer-sim: %s\n", err);
            rc = EXIT_USAGE;
            goto out;
        }
        start(&c, opts.host, (unsigned)opts.timeout_ms);
    }
    event_base_dispatch(c.base);
    rc = c.exit_code;
out:
    if (c.conn_timer)
        event_free(c.conn_timer);
    if (c.poll_timer)
        event_free(c.poll_timer);
    sim_engine_free(c.e);
    if (c.base)
        event_base_free(c.base);
    sim_terms_free(&c.terms);
    sim_scn_free(&c.scn);
    free(c.res);
    return rc;
}
