/* issuer-sim: the wallet issuer host — options, start-up and shut-down, signals and the hold
 * expiry timer. The daemon's other files each do one job (issuer_int.h lists them): links,
 * requests, validation, HSM commands, the group-commit apply, answers. Subcommands `seed` and
 * `keys` are offline tools (seed.c). */
#include "issuer_int.h"
#include "issuer_tools.h"

#include "db.h"
#include "fmt.h"
#include "hsm.h"
#include "hsmclient.h"
#include "log.h"
#include "parse.h"
#include "stream.h"
#include "tls.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- signals and timers */

void iss_maybe_finish_drain(struct iss *s)
{
    if (s->stopping && s->inflight == 0)
        event_base_loopexit(s->base, NULL);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct iss *s = arg;
    (void)what;
    if (s->stopping)
        return;
    at_log(AT_LOG_INFO, "shutdown", AT_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
           AT_UINT("inflight", s->inflight));
    s->stopping = true;
    link_stop_accepting(s);
    link_pause_all(s);
    struct timeval tv = { DRAIN_TIMEOUT, 0 };
    event_add(s->ev_drain, &tv);
    iss_maybe_finish_drain(s);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    at_log(AT_LOG_WARN, "drain_timeout", AT_UINT("inflight", s->inflight));
    event_base_loopexit(s->base, NULL);
}

static void reload_tls(struct at_tls *t, const char *what)
{
    char why[384];
    if (!t)
        return;
    if (at_tls_reload(t, why, sizeof why) == 0)
        at_log(AT_LOG_INFO, "tls_reloaded", AT_STR("endpoint", what));
    else
        at_log(AT_LOG_ERROR, "tls_reload_failed", AT_STR("endpoint", what), AT_STR("reason", why),
               AT_STR("action", "new connections keep the previous certificate"));
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct iss *s = arg;
    (void)what;
    (void)at_log_reopen();
    if (sig == SIGHUP) { /* SIGUSR1 only reopens the log */
        reload_tls(s->tls, "links");
        reload_tls(s->hsm_tls, "hsm");
    }
}

static void on_expired(void *arg, const struct db_error *err, int64_t expired)
{
    char count[AT_I64_CHARS];
    (void)arg;
    if (err->code == 0 && expired != 0) {
        at_put_i64(count, expired);
        at_log(AT_LOG_INFO, "holds_expired", AT_STR("count", count));
    }
}

static void on_expire_timer(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    if (db_wallet_ready(s->db) && db_wallet_expire_holds(s->db, on_expired, NULL) != 0)
        at_log0(AT_LOG_WARN, "holds_expiry_skipped");
}

/* ---------------------------------------------------------------- options */

struct opts {
    const char *listen, *dialect, *framing, *hsm, *db, *log, *log_level;
    const char *zpk, *zak, *pvk, *zmk;
    const char *tls_cert, *tls_key, *tls_ca, *hsm_ca, *hsm_cert, *hsm_key;
    unsigned max_inflight, hsm_conns, db_conns, key_grace_s;
};

/* The TLS contexts --tls-cert and --hsm-ca ask for. 0, or -1 after saying why. */
static int make_tls(struct iss *s, const struct opts *o)
{
    char why[384], host[128];
    if ((o->tls_key || o->tls_ca) && !o->tls_cert) {
        fprintf(stderr, "issuer-sim: --tls-key and --tls-ca need --tls-cert\n");
        return -1;
    }
    if (o->tls_cert) {
        struct at_tls_conf tc = {
            .cert = o->tls_cert, .key = o->tls_key, .ca = o->tls_ca, .server = true
        };
        if (!(s->tls = at_tls_new(&tc, why, sizeof why))) {
            fprintf(stderr, "issuer-sim: TLS: %s\n", why);
            return -1;
        }
    }
    if ((o->hsm_cert || o->hsm_key) && !o->hsm_ca) {
        fprintf(stderr, "issuer-sim: --hsm-cert and --hsm-key need --hsm-ca\n");
        return -1;
    }
    if (o->hsm_ca) {
        snprintf(host, sizeof host, "%s", o->hsm);
        char *c = strrchr(host, ':');
        if (c)
            *c = '\0';
        struct at_tls_conf tc = {
            .cert = o->hsm_cert, .key = o->hsm_key, .ca = o->hsm_ca, .server_name = host
        };
        if (!(s->hsm_tls = at_tls_new(&tc, why, sizeof why))) {
            fprintf(stderr, "issuer-sim: TLS to the HSM: %s\n", why);
            return -1;
        }
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: issuer-sim [options]              run the issuer host\n"
               "       issuer-sim seed --wallets N [--bin BIN] [--db CONNINFO]\n"
               "       issuer-sim keys                   print the lab keys under the LMK\n"
               "options:\n"
               "  --listen HOST:PORT     switch links (default 127.0.0.1:9100)\n"
               "  --dialect NAME         ascii87 (default), ascii87b, bcd87, ebcdic87\n"
               "  --framing KIND         2b (default), 4a\n"
               "  --hsm HOST:PORT        hsm-sim (default 127.0.0.1:1500)\n"
               "  --hsm-connections N    default 2\n"
               "  --db CONNINFO          libpq conninfo (default: PG* environment)\n"
               "  --db-connections N     default 4\n"
               "  --log FILE             JSON-lines log (default stderr; reopened on SIGHUP/USR1)\n"
               "  --log-level LEVEL      debug, info (default), warn, error\n"
               "  --zpk/--zak/--pvk KEY  issuer keys under the LMK (default: the lab keys)\n"
               "  --zmk KEY              zone master key under the LMK: wraps the keys of an 0800\n"
               "                         key change (default: WALLET1's lab ZMK; docs/keys.md)\n"
               "  --key-grace SECONDS    previous ZPK/ZAK accepted this long after the new ones\n"
               "                         are first used (default 60)\n"
               "  --max-inflight N       requests in progress before reading stops (default 512)\n"
               "  --tls-cert F --tls-key F  serve the links over TLS 1.2/1.3 (files re-read on\n"
               "                         SIGHUP for new links)\n"
               "  --tls-ca F             with --tls-cert: require a client certificate this CA\n"
               "                         verifies (mutual authentication)\n"
               "  --hsm-ca F [--hsm-cert F --hsm-key F]  TLS to hsm-sim, verifying it with F\n"
               "environment: ATLAS_PAN_HMAC_KEY (hex, >= 32 characters; lab default otherwise)\n");
}

static int parse_uint(const char *name, const char *v, unsigned max, unsigned *out)
{
    uint64_t u;
    if (!at_parse_u64(v, max, &u) || u == 0) {
        fprintf(stderr, "issuer-sim: --%s wants a number in 1..%u\n", name, max);
        return -1;
    }
    *out = (unsigned)u;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        { "listen", required_argument, NULL, 'l' },
        { "dialect", required_argument, NULL, 'd' },
        { "framing", required_argument, NULL, 'f' },
        { "hsm", required_argument, NULL, 'h' },
        { "hsm-connections", required_argument, NULL, 'H' },
        { "db", required_argument, NULL, 'D' },
        { "db-connections", required_argument, NULL, 'C' },
        { "log", required_argument, NULL, 'L' },
        { "log-level", required_argument, NULL, 'V' },
        { "zpk", required_argument, NULL, 'z' },
        { "zak", required_argument, NULL, 'a' },
        { "pvk", required_argument, NULL, 'p' },
        { "zmk", required_argument, NULL, 'k' },
        { "key-grace", required_argument, NULL, 'g' },
        { "max-inflight", required_argument, NULL, 'm' },
        { "tls-cert", required_argument, NULL, 1 },
        { "tls-key", required_argument, NULL, 2 },
        { "tls-ca", required_argument, NULL, 3 },
        { "hsm-ca", required_argument, NULL, 4 },
        { "hsm-cert", required_argument, NULL, 5 },
        { "hsm-key", required_argument, NULL, 6 },
        { "help", no_argument, NULL, 'x' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o->listen = optarg;
            break;
        case 'd':
            o->dialect = optarg;
            break;
        case 'f':
            o->framing = optarg;
            break;
        case 'h':
            o->hsm = optarg;
            break;
        case 'H':
            if (parse_uint("hsm-connections", optarg, 64, &o->hsm_conns) != 0)
                return -1;
            break;
        case 'D':
            o->db = optarg;
            break;
        case 'C':
            if (parse_uint("db-connections", optarg, 64, &o->db_conns) != 0)
                return -1;
            break;
        case 'L':
            o->log = optarg;
            break;
        case 'V':
            o->log_level = optarg;
            break;
        case 'z':
            o->zpk = optarg;
            break;
        case 'a':
            o->zak = optarg;
            break;
        case 'p':
            o->pvk = optarg;
            break;
        case 'k':
            o->zmk = optarg;
            break;
        case 'g':
            if (parse_uint("key-grace", optarg, 86400, &o->key_grace_s) != 0)
                return -1;
            break;
        case 'm':
            if (parse_uint("max-inflight", optarg, 65536, &o->max_inflight) != 0)
                return -1;
            break;
        case 1:
            o->tls_cert = optarg;
            break;
        case 2:
            o->tls_key = optarg;
            break;
        case 3:
            o->tls_ca = optarg;
            break;
        case 4:
            o->hsm_ca = optarg;
            break;
        case 5:
            o->hsm_cert = optarg;
            break;
        case 6:
            o->hsm_key = optarg;
            break;
        case 'x':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- start-up */

/* The link's dialect and framing, and the listen address. 0, or 2 after saying why. */
static int configure_link(struct iss *s, const struct opts *o, struct sockaddr_storage *ss,
                          socklen_t *sl)
{
    const char *why = NULL;
    s->dialect = iso_dialect_find(o->dialect);
    if (!s->dialect) {
        fprintf(stderr, "issuer-sim: unknown dialect '%s'\n", o->dialect);
        return 2;
    }
    /* TPDU framing belongs to POS terminals, not to host-to-host links. */
    s->wire.max = MAX_MSG;
    if (iso_frame_kind_parse(o->framing, &s->wire.kind) != 0 ||
        (s->wire.kind != ISO_FRAME_2B && s->wire.kind != ISO_FRAME_4A)) {
        fprintf(stderr, "issuer-sim: framing '%s' not supported (2b, 4a)\n", o->framing);
        return 2;
    }
    if (!at_parse_hostport(o->listen, ss, sl, &why)) {
        fprintf(stderr, "issuer-sim: --listen %s: %s\n", o->listen, why ? why : "invalid");
        return 2;
    }
    return 0;
}

/* 0, or 2 after saying why (the log is not open then). */
static int open_log(const struct opts *o)
{
    int lvl = at_log_level_parse(o->log_level);
    if (lvl < 0) {
        fprintf(stderr, "issuer-sim: unknown log level '%s'\n", o->log_level);
        return 2;
    }
    if (at_log_open(o->log, "issuer-sim") != 0) {
        fprintf(stderr, "issuer-sim: cannot open log %s: %s\n", o->log, strerror(errno));
        return 2;
    }
    at_log_set_level((enum at_log_level)lvl);
    return 0;
}

/* The PAN hasher under ATLAS_PAN_HMAC_KEY; the key itself is wiped at once. 0 or -1. */
static int make_hasher(struct iss *s)
{
    uint8_t key[64];
    size_t key_len;
    int bad = sim_pan_hmac_key(key, sizeof key, &key_len) != 0 ||
              db_pan_hasher_new(key, key_len, &s->hasher) != 0;
    memset(key, 0, sizeof key);
    return bad ? -1 : 0;
}

/* Blocking start-up check: the wallet functions the statements call must be there. */
static int check_schema(const char *conninfo)
{
    struct db_error err = { 0 };
    int rc = db_wallet_schema_check(conninfo, &err);
    if (rc == DB_E_CONN)
        fprintf(stderr, "issuer-sim: database: %s\n", err.message);
    else if (rc != 0)
        fprintf(stderr, "issuer-sim: database schema: %s\n", err.message);
    return rc == 0 ? 0 : -1;
}

/* What the ledger holds, said once at start ("event":"ledger": wallets per BIN and currency), so
 * that an issuer-sim pointed at another issuer's database, or at one never seeded, shows at once
 * rather than as a run of 14s. An empty ledger is a warning, not a refusal: an issuer with no
 * cards answers every card 14, which is right. 0, or -1 when the database cannot say. */
static int log_ledger(const char *conninfo)
{
    struct db_wallet_census c;
    struct db_error err = { 0 };
    if (db_wallet_census(conninfo, &c, &err) != 0) {
        fprintf(stderr, "issuer-sim: database: %s\n", err.message);
        return -1;
    }
    char groups[DB_WALLET_CENSUS_MAX * 40 + 8];
    size_t n = 0;
    groups[0] = '\0';
    for (size_t i = 0; i < c.n && n < sizeof groups; i++)
        n += (size_t)snprintf(groups + n, sizeof groups - n, "%s%s/%03d:%lld", i ? " " : "",
                              c.group[i].bin, c.group[i].currency, (long long)c.group[i].wallets);
    if (c.more && n < sizeof groups)
        snprintf(groups + n, sizeof groups - n, " ...");
    at_log(AT_LOG_INFO, "ledger", AT_INT("wallets", c.wallets),
           AT_STR("bin_currency_wallets", groups));
    if (c.wallets == 0) {
        at_log0(AT_LOG_WARN, "ledger_empty");
        fprintf(stderr, "issuer-sim: warning: the wallet database holds no wallet: every card"
                        " will be answered 14 (issuer-sim seed)\n");
    }
    return 0;
}

/* The issuer keys must be keys under the LMK (the daemon never holds a clear key). 0 or -1. */
static int take_keys(struct iss *s, const struct opts *o)
{
    const char *names[4] = { "zpk", "zak", "pvk", "zmk" },
               *keys[4] = { o->zpk, o->zak, o->pvk, o->zmk };
    for (int i = 0; i < 4; i++) {
        size_t kl = 0;
        if (hsm_keytext_len(keys[i], strlen(keys[i]), &kl) != 0 || kl != strlen(keys[i]) ||
            kl >= KEY_TEXT) {
            fprintf(stderr, "issuer-sim: --%s is not a key under the LMK (16H, or U/T + hex)\n",
                    names[i]);
            return -1;
        }
    }
    memcpy(s->keys.zpk, o->zpk, strlen(o->zpk) + 1);
    memcpy(s->keys.zak, o->zak, strlen(o->zak) + 1);
    memcpy(s->keys.zmk, o->zmk, strlen(o->zmk) + 1);
    s->keys.grace_ms = (uint64_t)o->key_grace_s * 1000;
    s->pvk = o->pvk;
    return 0;
}

/* The request pool (every slot free) and a random start for approval codes. 0 or -1. */
static int make_pool(struct iss *s, unsigned size)
{
    s->pool_size = size;
    s->pool = calloc(s->pool_size, sizeof *s->pool);
    if (!s->pool)
        return -1;
    for (unsigned i = 0; i < s->pool_size; i++) {
        s->pool[i].iss = s;
        s->pool[i].next_free = s->free_list;
        s->free_list = &s->pool[i];
    }
    uint8_t r[4];
    FILE *f = fopen("/dev/urandom", "rb");
    if (f && fread(r, 1, 4, f) == 4)
        s->auth_seq = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
    if (f)
        fclose(f);
    return 0;
}

/* The hsm-sim client (its busy signal pauses the links) and the wallet database handle, whose
 * queue is sized above the pool so it never refuses a request's call. 0 or -1. */
static int start_clients(struct iss *s, const struct opts *o)
{
    char err[256];
    struct hsm_client_config hc = {
        .address = o->hsm,
        .connections = o->hsm_conns,
        .queue_limit = 4 * s->pool_size,
        .high_watermark = s->pool_size,
        .low_watermark = s->pool_size / 2,
        .busy_cb = link_on_hsm_busy,
        .busy_arg = s,
        .tls = s->hsm_tls,
    };
    s->hsm = hsm_client_new(s->base, &hc, err, sizeof err);
    if (!s->hsm) {
        fprintf(stderr, "issuer-sim: hsm client: %s\n", err);
        return -1;
    }
    struct db_wallet_opts dbo = {
        .conninfo = o->db,
        .connections = o->db_conns,
        .max_queued = 2 * s->pool_size + 16,
    };
    if (db_wallet_new(s->base, &dbo, &s->db) != 0) {
        fprintf(stderr, "issuer-sim: database client could not start\n");
        return -1;
    }
    s->apply_max_inflight = o->db_conns ? o->db_conns : 1; /* one batch per connection */
    s->load_max_inflight = s->apply_max_inflight;          /* the same for load statements */
    return 0;
}

/* Signals, the drain and expiry timers, and the apply flush (once per loop turn). 0 or -1. */
static int add_events(struct iss *s)
{
    s->ev_term = evsignal_new(s->base, SIGTERM, on_stop, s);
    s->ev_int = evsignal_new(s->base, SIGINT, on_stop, s);
    s->ev_hup = evsignal_new(s->base, SIGHUP, on_hup, s);
    s->ev_usr1 = evsignal_new(s->base, SIGUSR1, on_hup, s); /* logrotate: reopen the log */
    s->ev_drain = evtimer_new(s->base, on_drain_timeout, s);
    s->ev_expire = event_new(s->base, -1, EV_PERSIST, on_expire_timer, s);
    s->ev_apply = event_new(s->base, -1, 0, apply_flush, s);
    s->ev_load = event_new(s->base, -1, 0, load_flush, s);
    struct timeval ep = { EXPIRE_PERIOD, 0 };
    if (!s->ev_term || !s->ev_int || !s->ev_hup || !s->ev_usr1 || !s->ev_drain || !s->ev_expire ||
        !s->ev_apply || !s->ev_load || event_add(s->ev_term, NULL) != 0 ||
        event_add(s->ev_int, NULL) != 0 || event_add(s->ev_hup, NULL) != 0 ||
        event_add(s->ev_usr1, NULL) != 0 || event_add(s->ev_expire, &ep) != 0) {
        fprintf(stderr, "issuer-sim: cannot set up signals\n");
        return -1;
    }
    return 0;
}

/* Finishes every request still held (decisions not yet sent, database calls and HSM commands
 * in flight all answer from here with the clients going away: no new work, no answer), closes
 * the links and frees everything. */
static void shut_down(struct iss *s)
{
    link_stop_accepting(s);
    s->closing = true;
    if (s->ev_apply)
        apply_flush(-1, 0, s); /* decisions not yet sent are answered 96 */
    if (s->ev_load)
        load_flush(-1, 0, s); /* loads not yet sent too */
    if (s->db)
        db_wallet_free(s->db); /* pending calls answer DB_E_CLOSED: their txns finish here */
    if (s->hsm)
        hsm_client_free(s->hsm);
    link_close_all(s);
    for (int i = 0; s->base && !LIST_EMPTY(&s->conns) && i < 100; i++)
        event_base_loop(s->base, EVLOOP_NONBLOCK); /* the streams run their on_close */
    struct event *evs[] = { s->ev_term,  s->ev_int,    s->ev_hup,   s->ev_usr1,
                            s->ev_drain, s->ev_expire, s->ev_apply, s->ev_load };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s->base)
        event_base_free(s->base);
    free(s->pool);
    at_tls_free(s->tls);
    at_tls_free(s->hsm_tls);
}

/* Sets up the loop and runs it until a signal ends it, then shuts down. Returns 0, or 1 when
 * start-up failed (after saying why). */
static int serve(struct iss *s, const struct opts *o, const struct sockaddr_storage *ss,
                 socklen_t sl)
{
    int ret = 1;
    s->base = at_event_base_new();
    if (!s->base || make_pool(s, o->max_inflight) != 0)
        fprintf(stderr, "issuer-sim: out of memory\n");
    else if (make_tls(s, o) != 0 || start_clients(s, o) != 0)
        ; /* said */
    else if (link_listen(s, (const struct sockaddr *)ss, sl) != 0)
        fprintf(stderr, "issuer-sim: cannot listen on %s: %s\n", o->listen, strerror(errno));
    else if (add_events(s) == 0)
        ret = 0;
    if (ret == 0) {
        at_log(AT_LOG_INFO, "start", AT_STR("listen", o->listen), AT_STR("dialect", o->dialect),
               AT_STR("framing", o->framing), AT_STR("hsm", o->hsm),
               AT_STR("tls", s->tls ? (o->tls_ca ? "mutual" : "on") : "off"),
               AT_UINT("max_inflight", s->pool_size));
        event_base_dispatch(s->base);
        struct db_wallet_stats ws;
        db_wallet_stats(s->db, &ws);
        at_log(AT_LOG_INFO, "stop", AT_UINT("requests", s->n_req),
               AT_UINT("approved", s->n_approved), AT_UINT("apply_transactions", s->n_apply_jobs),
               AT_UINT("loads", ws.loads), AT_UINT("load_statements", ws.load_statements));
    }
    shut_down(s);
    return ret;
}

/* Exit status: 0 after a clean stop, 1 when the daemon could not start, 2 for bad usage. */
static int run(const struct opts *o)
{
    struct iss s = { 0 };
    s.apply_tail = &s.apply_head;
    s.load_tail = &s.load_head;
    struct sockaddr_storage ss;
    socklen_t sl;
    int ret = configure_link(&s, o, &ss, &sl);
    if (ret == 0)
        ret = open_log(o);
    if (ret != 0)
        return ret;
    if (make_hasher(&s) != 0)
        ret = 2;
    else if (check_schema(o->db) != 0 || log_ledger(o->db) != 0 || take_keys(&s, o) != 0)
        ret = 1;
    else
        ret = serve(&s, o, &ss, sl);
    db_pan_hasher_free(s.hasher);
    at_log_close();
    return ret;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "seed") == 0)
        return sim_seed_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keys") == 0)
        return sim_keys_main(argc - 1, argv + 1);
    struct opts o = {
        .listen = "127.0.0.1:9100",
        .dialect = "ascii87",
        .framing = "2b",
        .hsm = "127.0.0.1:1500",
        .db = NULL,
        .log = NULL,
        .log_level = "info",
        .zpk = SIM_LAB_ZPK_LMK,
        .zak = SIM_LAB_ZAK_LMK,
        .pvk = SIM_LAB_PVK_LMK,
        .zmk = SIM_LAB_ZMK_LMK,
        .key_grace_s = 60,
        .max_inflight = 512,
        .hsm_conns = 2,
        .db_conns = 4,
    };
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    return run(&o);
}
