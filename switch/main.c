/* switchd: the authorization switch daemon. Wires the modules together on one
 * libevent loop, owns startup (config, descriptor limit, schema check,
 * connections), signals (SIGTERM/SIGINT drain, SIGHUP reload + log reopen)
 * and backpressure. */
#include "switchd.h"

#include "cli.h"
#include "db.h"
#include "hex.h"
#include "hsmclient.h"
#include "keyx.h"
#include "log.h"
#include "advice.h"
#include "saf.h"
#include "stream.h"
#include "swtls.h"
#include "xfer.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define SWITCHD_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: switchd [--config FILE] [--check-config] [--help-config]\n"
               "\n"
               "The Atlas authorization switch. Without --config it runs with the documented\n"
               "loopback defaults (switchd --help-config lists every key).\n"
               "  --config FILE    configuration file (INI-like, see --help-config)\n"
               "  --check-config   load and validate the configuration, then exit\n"
               "  --help-config    print every configuration key with its default\n"
               "Signals: TERM/INT drain and stop, HUP reopens the log and reloads the\n"
               "reference data, USR1 only reopens the log (logrotate).\n"
               "Environment: PG* (libpq) when 'db' is empty; ATLAS_PAN_HMAC_KEY and\n"
               "ATLAS_PAN_SEAL_KEY (hex) when the key files are not configured.\n");
}

/* Reads a hex key from a file (first line) or from the environment. A key
 * taken from the environment is wiped from it: no child process, core file
 * or /proc/<pid>/environ reader finds it later. Every copy is cleansed. */
static int load_key(const char *file, const char *env, size_t min_len, uint8_t *out, size_t cap,
                    size_t *len, char *err, size_t errcap)
{
    char buf[256] = "";
    if (file[0]) {
        FILE *f = fopen(file, "r");
        if (!f || !fgets(buf, sizeof buf, f)) {
            snprintf(err, errcap, "cannot read key file %s", file);
            if (f)
                fclose(f);
            OPENSSL_cleanse(buf, sizeof buf);
            return -1;
        }
        fclose(f);
    } else {
        char *v = getenv(env);
        if (!v) {
            snprintf(err, errcap, "%s is not set and no key file is configured", env);
            return -1;
        }
        snprintf(buf, sizeof buf, "%s", v);
        OPENSSL_cleanse(v, strlen(v));
        unsetenv(env);
    }
    buf[strcspn(buf, "\r\n \t")] = '\0';
    int n = at_hex_decode(buf, strlen(buf), out, cap);
    OPENSSL_cleanse(buf, sizeof buf);
    if (n < 0 || (size_t)n < min_len) {
        snprintf(err, errcap, "%s must be at least %zu bytes of hex", file[0] ? file : env,
                 min_len);
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

void sw_backpressure_update(struct sw_server *srv)
{
    if (srv->stopping)
        return;
    bool want = srv->inflight >= srv->conf.max_inflight ||
                (srv->journal && db_journal_saturated(srv->journal)) ||
                (srv->hsm && hsm_client_busy(srv->hsm));
    if (want == srv->backpressure)
        return;
    srv->backpressure = want;
    at_log(AT_LOG_WARN, "backpressure", AT_BOOL("on", want), AT_UINT("in_flight", srv->inflight));
    if (!srv->draining)
        sw_terms_set_paused(srv, want);
}

static void on_journal_drain(void *arg)
{
    sw_backpressure_update(arg);
}

static void on_hsm_busy(void *arg, bool busy)
{
    sw_backpressure_update(arg);
}

void sw_server_ready(struct sw_server *srv)
{
    if (sw_listeners_start(srv) != 0 || sw_http_start(srv) != 0) {
        srv->exit_code = 1;
        event_base_loopbreak(srv->base);
        return;
    }
    srv->ready = true;
    if (!srv->notify && sw_notify_start(srv) != 0) /* instances: NOTIFY atlas_refdata */
        at_log(AT_LOG_ERROR, "refdata_listen_down", AT_STR("reason", "out of memory"),
               AT_STR("action", "SIGHUP still reloads"));
    at_log(AT_LOG_INFO, "ready", AT_STR("version", SWITCHD_VERSION),
           AT_UINT("listeners", srv->n_listeners), AT_UINT("issuer_links", srv->n_links));
}

static void on_advices_loaded(struct sw_server *srv)
{
    if (sw_ref_reload(srv) != 0) {
        at_log(AT_LOG_ERROR, "start_failed",
               AT_STR("reason", "cannot queue the reference data load"));
        srv->exit_code = 1;
        event_base_loopbreak(srv->base);
    }
}

/* The reversal queue is loaded: then the advice queue (advice.c), whose recovery reads the
 * journal as the replay and the in-flight recovery left it. */
static void on_saf_loaded(struct sw_server *srv)
{
    sw_advice_load(srv, on_advices_loaded);
}

static void recover(struct sw_server *srv);
static void recover_transfers(struct sw_server *srv);

static void on_recover_retry(evutil_socket_t fd, short what, void *arg)
{
    recover(arg);
}

/* The in-flight rows the previous run of this instance left are settled:
 * each becomes a reversal, unless its approval is journaled. */
static void on_recovered(void *arg, const struct db_error *err, int64_t reversed, int64_t settled)
{
    struct sw_server *srv = arg;
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "recovery_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying in 1 s"));
        struct timeval tv = { 1, 0 };
        event_base_once(srv->base, -1, EV_TIMEOUT, on_recover_retry, srv, &tv);
        return;
    }
    at_log(AT_LOG_INFO, "recovered", AT_STR("instance", srv->conf.instance_id),
           AT_INT("reversals_queued", reversed), AT_INT("settled", settled));
    recover_transfers(srv);
}

static void on_transfers_retry(evutil_socket_t fd, short what, void *arg)
{
    recover_transfers(arg);
}

/* The transfers the previous run left unfinished are settled (after the in-flight rows: their
 * legs in flight are journaled and queued for reversal by then), before the reversal queue is
 * loaded (the reversals this queues are in it). */
static void on_transfers_recovered(void *arg, const struct db_error *err, int64_t completed,
                                   int64_t failed)
{
    struct sw_server *srv = arg;
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "transfer_recovery_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying in 1 s"));
        struct timeval tv = { 1, 0 };
        event_base_once(srv->base, -1, EV_TIMEOUT, on_transfers_retry, srv, &tv);
        return;
    }
    if (completed > 0 || failed > 0)
        at_log(AT_LOG_INFO, "transfers_recovered", AT_INT("completed", completed),
               AT_INT("failed", failed));
    sw_saf_load(srv, on_saf_loaded);
}

static void recover_transfers(struct sw_server *srv)
{
    int rc = db_recover_transfers(srv->db, srv->conf.instance_id, on_transfers_recovered, srv);
    if (rc != 0) {
        const struct db_error failed = { .code = rc, .message = "database queue full" };
        on_transfers_recovered(srv, &failed, -1, -1);
    }
}

static void recover(struct sw_server *srv)
{
    int rc = db_recover_inflight(srv->db, srv->conf.instance_id, on_recovered, srv);
    if (rc != 0) {
        const struct db_error failed = { .code = rc, .message = "database queue full" };
        on_recovered(srv, &failed, -1, -1);
    }
}

/* Nothing the previous run acknowledged waits in a spool any more. */
static void on_replayed(void *arg)
{
    recover(arg);
}

static void finish_exit(void *arg)
{
    static bool done; /* once: the release's answer and its deadline may both come */
    struct sw_server *srv = arg;
    if (done)
        return;
    done = true;
    at_log(AT_LOG_INFO, "stopped", AT_UINT("in_flight", srv->inflight));
    event_base_loopexit(srv->base, NULL);
}

static void on_released(void *arg, const struct db_error *err)
{
    if (err->code != 0)
        at_log(AT_LOG_WARN, "claims_release_failed", AT_STR("error", err->message),
               AT_STR("action", "the others take them over after the lease"));
    finish_exit(arg);
}

static void on_release_deadline(evutil_socket_t fd, short what, void *arg)
{
    finish_exit(arg);
}

/* Instances (docs/switchd.md "Instances"): once drained, this instance gives its lease up
 * (switch.release_instance) so that the others take its queue rows at their next claim rather
 * than after lease_ms; one second at most is waited for it. */
static void release_then_exit(void *arg)
{
    struct sw_server *srv = arg;
    struct timeval tv = { 1, 0 };
    if (!srv->db || db_release_instance(srv->db, srv->conf.instance_id, on_released, srv) != 0 ||
        event_base_once(srv->base, -1, EV_TIMEOUT, on_release_deadline, srv, &tv) != 0)
        finish_exit(srv);
}

/* Drain: runs every 50 ms after SIGTERM until nothing is in flight and the
 * reversal queue's row changes (acks above all) are committed — or the drain
 * timeout —, then flushes the journal and stops. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sw_server *srv = arg;
    uint64_t unwritten = sw_saf_unwritten(srv) + sw_advice_unwritten(srv);
    if ((srv->inflight > 0 || unwritten > 0) && sw_now_ms() < srv->drain_deadline_ms)
        return;
    event_del(srv->drain_timer);
    if (srv->inflight > 0 || unwritten > 0)
        at_log(AT_LOG_WARN, "drain_timeout", AT_UINT("in_flight", srv->inflight),
               AT_UINT("reversal_rows_unwritten", unwritten));
    sw_terms_close_all(srv, "switch stopping");
    sw_links_stop(srv);
    if (srv->journal)
        db_journal_drain(srv->journal, release_then_exit, srv);
    else
        release_then_exit(srv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sw_server *srv = arg;
    if (sig == SIGHUP || sig == SIGUSR1) {
        if (at_log_reopen() != 0)
            at_log(AT_LOG_ERROR, "log_reopen_failed", AT_STR("error", strerror(errno)),
                   AT_STR("action", "still writing to the previous file"));
        if (sig == SIGUSR1) {
            at_log(AT_LOG_INFO, "log_reopened");
            return;
        }
        at_log(AT_LOG_INFO, "reload",
               AT_STR("what", "log reopened, reference data reloading, TLS files read again"));
        sw_tls_reload(srv); /* new connections only: established sessions keep theirs */
        if (sw_ref_reload(srv) != 0)
            at_log(AT_LOG_ERROR, "reload_failed", AT_STR("reason", "database queue full"));
        return;
    }
    if (srv->draining)
        return;
    srv->draining = true;
    at_log(AT_LOG_INFO, "draining", AT_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
           AT_UINT("in_flight", srv->inflight));
    sw_listeners_stop(srv);
    /* /health stays up and answers 503 "draining" until the process exits, so that HAProxy's
     * check takes this instance out of rotation while in-flight requests finish (docs/switchd.md
     * "Instances"); teardown() stops it. */
    sw_terms_set_paused(srv, true);
    srv->drain_deadline_ms = sw_now_ms() + srv->conf.drain_timeout_ms;
    struct timeval tv = { 0, 50000 };
    event_add(srv->drain_timer, &tv);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    at_log_flush();
}

static int check_schema(struct sw_server *srv, char *err, size_t errcap)
{
    struct db_error e;
    int rc = db_schema_check_at(srv->conf.db, DB_SCHEMA_VERSION, &e);
    if (rc != 0) {
        snprintf(err, errcap, "%s", e.message);
        return -1;
    }
    return 0;
}

/* Makes sure switchd may open every descriptor its configuration can need
 * (sw_config_fd_budget: every listener full, the issuer links, the HSM pool,
 * the database connections, a reserve): raises the soft RLIMIT_NOFILE as
 * far as that, within the hard limit. Returns -1 with err naming the
 * numbers when even the hard limit is too low: such a switch would fail
 * accept() — and its HSM, database and spool — at a fraction of its caps
 * instead of the limits an operator configured. */
static int ensure_nofile(const struct sw_config *conf, char *err, size_t errcap)
{
    struct sw_fd_budget b;
    struct rlimit rl;
    sw_config_fd_budget(conf, &b);
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        snprintf(err, errcap, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < b.total) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < b.total) {
            snprintf(err, errcap,
                     "needs %llu file descriptors (max_connections of the listeners %llu, issuer "
                     "links %llu, HSM %llu, PostgreSQL %llu, reserve %llu) but the hard "
                     "RLIMIT_NOFILE is %llu: lower max_connections or raise the hard limit "
                     "(ulimit -Hn, systemd LimitNOFILE=)",
                     (unsigned long long)b.total, (unsigned long long)b.terminals,
                     (unsigned long long)b.issuers, (unsigned long long)b.hsm,
                     (unsigned long long)b.database, (unsigned long long)b.reserve,
                     (unsigned long long)rl.rlim_max);
            return -1;
        }
        rl.rlim_cur = b.total;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
            snprintf(err, errcap, "cannot raise RLIMIT_NOFILE from %llu to %llu: %s",
                     (unsigned long long)was, (unsigned long long)b.total, strerror(errno));
            return -1;
        }
    }
    at_log(AT_LOG_INFO, "descriptors", AT_UINT("needed", b.total),
           AT_UINT("limit", (uint64_t)rl.rlim_cur), AT_UINT("was", (uint64_t)was),
           AT_UINT("hard", (uint64_t)rl.rlim_max));
    return 0;
}

static int start(struct sw_server *srv, char *err, size_t errcap)
{
    uint8_t hkey[16], mac_key[64];
    size_t seal_len, mac_key_len;
    if (ensure_nofile(&srv->conf, err, errcap) != 0)
        return -1;
    if (load_key(srv->conf.pan_hmac_key_file, "ATLAS_PAN_HMAC_KEY", 16, mac_key, sizeof mac_key,
                 &mac_key_len, err, errcap) != 0 ||
        load_key(srv->conf.pan_seal_key_file, "ATLAS_PAN_SEAL_KEY", 32, srv->pan_seal_key,
                 sizeof srv->pan_seal_key, &seal_len, err, errcap) != 0)
        return -1;
    int hrc = db_pan_hasher_new(mac_key, mac_key_len, &srv->pan_hasher);
    OPENSSL_cleanse(mac_key, sizeof mac_key);
    if (hrc != 0) {
        snprintf(err, errcap, "cannot set up the PAN HMAC key");
        return -1;
    }
    if (check_schema(srv, err, errcap) != 0)
        return -1;
    if (getrandom(hkey, sizeof hkey, 0) != (ssize_t)sizeof hkey) {
        snprintf(err, errcap, "getrandom failed");
        return -1;
    }
    srv->recent =
        sw_recent_new(srv->conf.dup_capacity, srv->conf.dup_window_s * 1000, hkey, sw_now_ms());
    if (!srv->recent) {
        snprintf(err, errcap, "cannot allocate the duplicate table (dup_capacity)");
        return -1;
    }
    struct db_client_opts dbo = { .conninfo = srv->conf.db,
                                  .connections = SW_DB_CLIENT_CONNECTIONS };
    if (db_client_new(srv->base, &dbo, &srv->db) != 0) {
        snprintf(err, errcap, "cannot create the database client");
        return -1;
    }
    char spool[512];
    mkdir(srv->conf.spool_dir, 0750);
    snprintf(spool, sizeof spool, "%s/switchd.journal.spool", srv->conf.spool_dir);
    struct db_journal_opts jo = {
        .conninfo = srv->conf.db,
        .spool_path = spool,
        .connections = (unsigned)srv->conf.journal_connections,
        .batch_max = (unsigned)srv->conf.journal_batch_rows,
        .batch_delay_us = (uint32_t)srv->conf.journal_flush_us,
        .queue_max = (unsigned)srv->conf.journal_queue_max,
        .owner = srv->conf.instance_id,
        .on_drain = on_journal_drain,
        .drain_arg = srv,
    };
    if (db_journal_new(srv->base, &jo, &srv->journal) != 0) {
        snprintf(err, errcap, "cannot open the journal (spool under %.200s)", srv->conf.spool_dir);
        return -1;
    }
    struct hsm_client_config hc = {
        .address = srv->conf.hsm_address,
        .connections = (unsigned)srv->conf.hsm_connections,
        .header_len = (unsigned)srv->conf.hsm_header_len,
        .queue_limit = (unsigned)srv->conf.hsm_queue_max,
        .timeout_ms = (unsigned)srv->conf.hsm_timeout_ms,
        .busy_cb = on_hsm_busy,
        .busy_arg = srv,
    };
    if (sw_tls_start(srv, err, errcap) != 0) /* listeners, issuer links, HSM (swtls.c) */
        return -1;
    hc.tls = srv->hsm_tls;
    srv->hsm = hsm_client_new(srv->base, &hc, err, errcap);
    if (!srv->hsm)
        return -1;
    if (sw_links_start(srv) != 0) {
        snprintf(err, errcap, "cannot start the issuer links");
        return -1;
    }
    if (sw_saf_init(srv) != 0 || sw_advice_init(srv) != 0) {
        snprintf(err, errcap, "cannot start store-and-forward");
        return -1;
    }
    if (sw_keyx_start(srv) != 0) { /* issuer key changes (keyx.c, docs/keys.md) */
        snprintf(err, errcap, "cannot start the key change timer");
        return -1;
    }
    /* Recovery before service: the spool of the previous run is replayed,
     * then its in-flight rows settled, then the reversal queue loaded, and
     * only then do the listeners open (sw_server_ready, after the reference
     * data). */
    db_journal_when_replayed(srv->journal, on_replayed, srv);
    return 0;
}

/* Frees in dependency order: the HSM client first (its shutdown callbacks
 * finish txns, which touch the journal and the reversal queue), then the
 * database client (reversal inserts), then the journal; `stopping` keeps
 * those callbacks from starting new work. Each pointer is cleared as it is
 * freed. */
static void teardown(struct sw_server *srv)
{
    srv->stopping = true;
    sw_keyx_stop(srv);
    sw_listeners_stop(srv);
    sw_http_stop(srv);
    if (srv->hsm) {
        hsm_client_free(srv->hsm);
        srv->hsm = NULL;
    }
    if (srv->db) {
        db_client_free(srv->db);
        srv->db = NULL;
    }
    if (srv->journal) {
        db_journal_free(srv->journal);
        srv->journal = NULL;
    }
    /* Deliver what those callbacks finished, and let closing streams go. */
    event_base_loop(srv->base, EVLOOP_NONBLOCK);
    sw_notify_free(srv);
    sw_saf_free(srv);
    sw_advice_free(srv);
    sw_xfer_rows_free(srv);
    sw_links_free(srv);
    sw_tls_free(srv);
    while (srv->txn_free) {
        struct sw_txn *t = srv->txn_free;
        srv->txn_free = t->next_free;
        free(t);
    }
    sw_recent_free(srv->recent);
    srv->recent = NULL;
    sw_ref_free(srv->ref);
    srv->ref = NULL;
    for (struct event **e = &srv->sig_term; e <= &srv->drain_timer; e++) {
        if (*e)
            event_free(*e);
        *e = NULL;
    }
    db_pan_hasher_free(srv->pan_hasher);
    srv->pan_hasher = NULL;
    OPENSSL_cleanse(srv->pan_seal_key, sizeof srv->pan_seal_key);
}

int main(int argc, char **argv)
{
    static struct sw_server srv;
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "check-config", no_argument, NULL, 'k' },
        { "help-config", no_argument, NULL, 'H' },  { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },      { NULL, 0, NULL, 0 },
    };
    char err[512];
    bool check_only = false;
    int c;

    sw_config_defaults(&srv.conf);
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            srv.conf_path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'H':
            sw_config_print_help(stdout);
            return 0;
        case 'V':
            printf("switchd %s\n", SWITCHD_VERSION);
            return 0;
        case 'h':
        default:
            return at_usage(usage, c == 'h');
        }
    }
    if ((srv.conf_path && sw_config_load(srv.conf_path, &srv.conf, err, sizeof err) != 0) ||
        sw_config_validate(&srv.conf, err, sizeof err) != 0) {
        fprintf(stderr, "switchd: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i < srv.conf.n_listeners; i++)
        if (!iso_dialect_find(srv.conf.listeners[i].dialect)) {
            fprintf(stderr, "switchd: listener %s: unknown dialect '%s'\n",
                    srv.conf.listeners[i].name, srv.conf.listeners[i].dialect);
            return 2;
        }
    for (size_t i = 0; i < srv.conf.n_issuers; i++)
        if (!iso_dialect_find(srv.conf.issuers[i].dialect)) {
            fprintf(stderr, "switchd: issuer %s: unknown dialect '%s'\n", srv.conf.issuers[i].name,
                    srv.conf.issuers[i].dialect);
            return 2;
        }
    if (check_only) {
        printf("switchd: configuration OK\n");
        return 0;
    }
    if (at_log_open(srv.conf.log_file, "switchd") != 0) {
        fprintf(stderr, "switchd: cannot open log %s: %s\n", srv.conf.log_file, strerror(errno));
        return 1;
    }
    at_log_set_level((enum at_log_level)at_log_level_parse(srv.conf.log_level));
    at_log_set_buffered(true);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit makes the write fail (EFBIG), handled */

    srv.base = at_event_base_new();
    srv.sig_term = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    srv.sig_int = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    srv.sig_hup = evsignal_new(srv.base, SIGHUP, on_signal, &srv);
    srv.sig_usr1 = evsignal_new(srv.base, SIGUSR1, on_signal, &srv);
    srv.flush_timer = event_new(srv.base, -1, EV_PERSIST, on_flush, &srv);
    srv.drain_timer = event_new(srv.base, -1, EV_PERSIST, on_drain_tick, &srv);
    struct timeval flush_tv = { 0, 50000 };
    if (!srv.base || !srv.sig_term || !srv.sig_int || !srv.sig_hup || !srv.sig_usr1 ||
        !srv.flush_timer || !srv.drain_timer || event_add(srv.sig_term, NULL) ||
        event_add(srv.sig_int, NULL) || event_add(srv.sig_hup, NULL) ||
        event_add(srv.sig_usr1, NULL) || event_add(srv.flush_timer, &flush_tv)) {
        fprintf(stderr, "switchd: cannot set up the event loop\n");
        return 1;
    }
    sw_metrics_init(&srv.metrics);
    at_log(AT_LOG_INFO, "starting", AT_STR("version", SWITCHD_VERSION),
           AT_STR("config", srv.conf_path ? srv.conf_path : "(defaults)"));
    if (start(&srv, err, sizeof err) != 0) {
        at_log(AT_LOG_ERROR, "start_failed", AT_STR("reason", err));
        at_log_flush();
        fprintf(stderr, "switchd: %s\n", err);
        teardown(&srv);
        event_base_free(srv.base);
        return 1;
    }
    event_base_dispatch(srv.base);
    teardown(&srv);
    at_log_close();
    event_base_free(srv.base);
    return srv.exit_code;
}
