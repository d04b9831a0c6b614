/* switchd settings tables and loading. */
#include "config.h"

#include "bizday.h"
#include "conf.h"
#include "log.h"
#include "parse.h"

#include <stdio.h>
#include <string.h>

#define S(field) offsetof(struct sw_config, field), sizeof(((struct sw_config *)0)->field)
#define U(field) offsetof(struct sw_config, field), 0

static const struct at_setting switch_table[] = {
    { "acquirer_id", AT_SET_STR, S(acquirer_id), "100001", 0, 0,
      "acquirer id journaled for requests on listeners without their own" },
    { "log_file", AT_SET_STR, S(log_file), "-", 0, AT_SET_RELOADABLE,
      "JSON-lines log file ('-' = stderr); reopened on SIGHUP" },
    { "log_level", AT_SET_STR, S(log_level), "info", 0, AT_SET_RELOADABLE,
      "debug | info | warn | error" },
    { "metrics_address", AT_SET_STR, S(metrics_address), "127.0.0.1:9583", 0, 0,
      "HTTP address of /metrics and /health" },
    { "metrics_tls_cert", AT_SET_STR, S(metrics_tls_cert), "", 0, 0,
      "PEM certificate: /metrics and /health are served over HTTPS (TLS 1.2/1.3; the files are "
      "read again on SIGHUP); empty = plain HTTP" },
    { "metrics_tls_key", AT_SET_STR, S(metrics_tls_key), "", 0, 0, "key of metrics_tls_cert" },
    { "metrics_tls_ca", AT_SET_STR, S(metrics_tls_ca), "", 0, 0,
      "CA file: a scraper must present a client certificate it verifies (needs "
      "metrics_tls_cert)" },
    { "db", AT_SET_STR, S(db), "", 0, AT_SET_SENSITIVE,
      "libpq conninfo of the switch database; empty = PG* environment" },
    { "pan_hmac_key_file", AT_SET_STR, S(pan_hmac_key_file), "", 0, 0,
      "file holding the hex key of the journal's PAN HMAC (empty = ATLAS_PAN_HMAC_KEY)" },
    { "pan_seal_key_file", AT_SET_STR, S(pan_seal_key_file), "", 0, 0,
      "file holding the 64-hex AES-256 key sealing PANs in the reversal queue "
      "(empty = ATLAS_PAN_SEAL_KEY)" },
    { "max_inflight", AT_SET_U64, U(max_inflight), "8192", 1000000, 0,
      "requests inside the switch at once (about 16 KiB each); above it terminals are not read" },
    { "drain_timeout_ms", AT_SET_U64, U(drain_timeout_ms), "10000", 600000, 0,
      "on SIGTERM, how long in-flight requests (and reversal acks not yet committed) may take"
      " before exit" },
    { "journal_batch_rows", AT_SET_U64, U(journal_batch_rows), "256", 100000, 0,
      "journal group commit: at most this many rows per batch (transaction)" },
    /* Adaptive group commit (db/journal.c j_lingers): 0 = never wait; see docs/switchd.md. */
    { "journal_flush_us", AT_SET_U64, U(journal_flush_us), "0", 1000000, 0,
      "journal group commit: 0 (default) sends a batch as soon as a connection is free; T > 0"
      " lets a partial batch wait up to T microseconds for company, only while another batch is"
      " in flight (never on an idle writer)" },
    { "journal_connections", AT_SET_U64, U(journal_connections), "2", 64, 0,
      "PostgreSQL connections of the journal writer" },
    { "journal_queue_max", AT_SET_U64, U(journal_queue_max), "65536", 10000000, 0,
      "journal queue bound; full = stop reading terminals" },
    { "spool_dir", AT_SET_STR, S(spool_dir), "var/spool", 0, 0,
      "where journal records go while PostgreSQL is unreachable" },
    { "dup_window_s", AT_SET_U64, U(dup_window_s), "86400", 604800, 0,
      "how long a request identity is remembered for duplicate detection" },
    { "dup_capacity", AT_SET_U64, U(dup_capacity), "1048576", 100000000, 0,
      "most request identities remembered (older ones fall back to the journal's unique key)" },
    { "reversal_retry_ms", AT_SET_U64, U(reversal_retry_ms), "5000", 3600000, 0,
      "store-and-forward: delay between 0421 repeats" },
    { "instance_id", AT_SET_STR, S(instance_id), "switchd", 0, 0,
      "this switchd's name in switch.inflight: at start it settles the rows its previous run left"
      " (one name per instance sharing a database)" },
    { "stan_slot", AT_SET_U64, U(stan_slot), "0", 998, 0,
      "this instance's number among stan_slots instances: its issuer STANs are those with"
      " (STAN - 1) mod stan_slots = stan_slot, so no two instances send one issuer the same STAN" },
    { "stan_slots", AT_SET_U64, U(stan_slots), "1", 999, 0,
      "how many instances share the issuer STAN space (the same value on every instance)" },
    { "lease_ms", AT_SET_U64, U(lease_ms), "30000", 3600000, 0,
      "how long this instance's claim on reversal and advice queue rows lasts without renewal"
      " (renewed every lease_ms / 3); a dead instance's rows are taken over after it" },
    { "takeover_inflight_ms", AT_SET_U64, U(takeover_inflight_ms), "300000", 86400000, 0,
      "how long after a dead instance's lease expired a live one settles its requests in flight"
      " (recover_inflight on its behalf); at least lease_ms. Its spool may hold answers it"
      " delivered, so keep this above the time it takes to restart it (docs/switchd.md)" },
    { "clock_skew_s", AT_SET_U64, U(clock_skew_s), "120", 86400, 0,
      "how far a terminal's clock (DE 7) may be from ours; while the database is unreachable a"
      " request is forwarded only if its DE 7 is this much after what the duplicate table"
      " remembers from" },
    { "cutover", AT_SET_STR, S(cutover), "00:00", 0, AT_SET_MINLEN(5),
      "HH:MM (UTC) at which a business day ends: every answer carries in DE 15 the business day"
      " of its request's receipt (docs/settle.md); atlas-settle --cutover must be the same" },
};

static const struct at_setting hsm_table[] = {
    { "address", AT_SET_STR, S(hsm_address), "127.0.0.1:1500", 0, 0, "hsm-sim host:port" },
    { "connections", AT_SET_U64, U(hsm_connections), "4", 64, 0, "HSM connection pool size" },
    { "header_len", AT_SET_U64, U(hsm_header_len), "4", 32, 0, "payShield message header length" },
    { "timeout_ms", AT_SET_U64, U(hsm_timeout_ms), "2000", 600000, 0,
      "per-command timeout (the request gets 96)" },
    { "queue_max", AT_SET_U64, U(hsm_queue_max), "20000", 10000000, 0,
      "HSM commands queued or in flight; full = stop reading terminals" },
    /* TLS to hsm-sim (switch/swtls.c, docs/switchd.md "TLS"). */
    { "tls_ca", AT_SET_STR, S(hsm_tls_ca), "", 0, 0,
      "CA file verifying hsm-sim's certificate: set = the HSM link uses TLS (the files are read "
      "again on SIGHUP for new connections)" },
    { "tls_cert", AT_SET_STR, S(hsm_tls_cert), "", 0, 0,
      "client certificate presented to hsm-sim (optional)" },
    { "tls_key", AT_SET_STR, S(hsm_tls_key), "", 0, 0, "key of tls_cert" },
    { "tls_server_name", AT_SET_STR, S(hsm_tls_server_name), "", 0, 0,
      "name or IP address hsm-sim's certificate must carry (empty = the host of address)" },
};
#undef S
#undef U

#define L(field)                                                                                   \
    offsetof(struct sw_listener_conf, field), sizeof(((struct sw_listener_conf *)0)->field)
#define LU(field) offsetof(struct sw_listener_conf, field), 0
static const struct at_setting listener_table[] = {
    { "address", AT_SET_STR, L(address), "127.0.0.1:8583", 0, 0, "listen address" },
    { "acquirer_id", AT_SET_STR, L(acquirer_id), "", 0, 0,
      "acquirer id journaled for this listener (empty = the [switch] acquirer_id)" },
    { "dialect", AT_SET_STR, L(dialect), "ascii87", 0, 0, "ISO 8583 dialect (isodump --help)" },
    { "framing", AT_SET_STR, L(framing), "2b", 0, 0,
      "2b = 2-byte length, 4a = 4 ASCII digits, tpdu = 2-byte length + TPDU" },
    { "max_connections", AT_SET_U64, LU(max_connections), "8192", 1000000, 0,
      "connections accepted at once; more are closed at accept" },
    { "max_inflight", AT_SET_U64, LU(max_inflight), "64", 100000, 0,
      "requests in flight per connection before the switch stops reading it" },
    { "idle_timeout_s", AT_SET_U64, LU(idle_timeout_s), "300", 86400, 0,
      "close a connection that sends nothing this long while none of its requests is in "
      "flight (0 = never)" },
    { "max_frame", AT_SET_U64, LU(max_frame), "2048", 2048, 0,
      "largest accepted request, bytes (at most 2048: a terminal request is far smaller)" },
    { "frame_timeout_ms", AT_SET_U64, LU(frame_timeout_ms), "10000", 600000, 0,
      "close a connection whose request, once its first byte arrived, is not complete within "
      "this (a byte at a time holds no slot; 0 = no deadline)" },
    { "max_connections_per_address", AT_SET_U64, LU(max_connections_per_address), "256", 1000000, 0,
      "connections at once from one IP address on this listener; more are closed at accept "
      "(0 = no cap)" },
    { "max_output_bytes", AT_SET_U64, LU(max_output_bytes), "262144", 1073741824, 0,
      "answers a terminal has not read beyond what the kernel holds for it; more closes the "
      "connection (0 = no cap: reading it pauses at 1 MiB instead; else at least 4096)" },
    { "write_timeout_ms", AT_SET_U64, LU(write_timeout_ms), "30000", 3600000, 0,
      "close a connection whose answers, once they wait for the socket, are not all read "
      "within this (0 = never)" },
    /* TLS (switch/swtls.c, docs/switchd.md "TLS"). */
    { "tls_cert", AT_SET_STR, L(tls_cert), "", 0, 0,
      "PEM certificate (chain): set = this listener speaks TLS 1.2/1.3 only (empty = plain "
      "TCP); the files are read again on SIGHUP for new connections" },
    { "tls_key", AT_SET_STR, L(tls_key), "", 0, 0, "PEM private key of tls_cert" },
    { "tls_ca", AT_SET_STR, L(tls_ca), "", 0, 0,
      "CA file: set = mutual authentication, a terminal without a client certificate this CA "
      "verifies is refused" },
    { "tls_acquirer_from", AT_SET_STR, L(tls_acquirer_from), "", 0, 0,
      "cn | ou | o: the client certificate's subject attribute that must equal this listener's "
      "acquirer id, else the session is refused (empty = no binding; needs tls_ca)" },
    { "tls_handshake_timeout_ms", AT_SET_U64, LU(tls_handshake_timeout_ms), "10000", 600000,
      AT_SET_NONZERO,
      "close a TLS connection whose handshake has not ended this long after it was accepted" },
    { "reuseport", AT_SET_BOOL, LU(reuseport), "off", 0, 0,
      "SO_REUSEPORT: several switchd on one host listen on this port, the kernel spreads"
      " connections among them" },
};
#undef L
#undef LU

#define I(field)  offsetof(struct sw_issuer_conf, field), sizeof(((struct sw_issuer_conf *)0)->field)
#define IU(field) offsetof(struct sw_issuer_conf, field), 0
static const struct at_setting issuer_table[] = {
    { "address", AT_SET_STR, I(address), "127.0.0.1:9000", 0, 0, "issuer host:port" },
    { "dialect", AT_SET_STR, I(dialect), "ascii87", 0, 0, "ISO 8583 dialect of the link" },
    { "framing", AT_SET_STR, I(framing), "2b", 0, 0, "2b | 4a | tpdu" },
    { "timeout_ms", AT_SET_U64, IU(timeout_ms), "5000", 600000, 0,
      "issuer answer deadline; then 91 to the terminal (or stand-in) and a reversal to the "
      "issuer" },
    { "timeout_ms.0100", AT_SET_U64, IU(timeout_ms_0100), "0", 600000, 0,
      "deadline of 0100 authorizations (0 = timeout_ms)" },
    { "timeout_ms.0200", AT_SET_U64, IU(timeout_ms_0200), "0", 600000, 0,
      "deadline of 0200 financial requests (0 = timeout_ms)" },
    { "timeout_ms.cash", AT_SET_U64, IU(timeout_ms_cash), "0", 600000, 0,
      "deadline of cash withdrawals / cash-outs (processing code 01, ATM and agents) whatever"
      " the MTI; wins over timeout_ms.0100/0200 (0 = by MTI)" },
    { "stand_in", AT_SET_BOOL, IU(stand_in), "off", 0, 0,
      "on: when this issuer's link is down or it does not answer in time, switchd decides 0100/"
      "0200 requests by its stand-in rules (docs/switchd.md, \"Stand-in\"); off: 91" },
    { "echo_interval_ms", AT_SET_U64, IU(echo_interval_ms), "30000", 3600000, 0,
      "send an 0800 echo after this much idle time" },
    { "reconnect_min_ms", AT_SET_U64, IU(reconnect_min_ms), "100", 600000, 0,
      "first reconnect delay (doubles up to reconnect_max_ms)" },
    { "reconnect_max_ms", AT_SET_U64, IU(reconnect_max_ms), "5000", 600000, 0,
      "longest reconnect delay" },
    { "max_inflight", AT_SET_U64, IU(max_inflight), "20000", 1000000, 0,
      "requests outstanding on the link" },
    { "max_frame", AT_SET_U64, IU(max_frame), "8192", 65535, 0, "largest accepted frame, bytes" },
    /* key change (docs/keys.md) */
    { "key_change_interval_s", AT_SET_U64, IU(key_change_interval_s), "0", 31622400, 0,
      "change the link's ZPK and ZAK this often (0 = only on demand: atlas-keys rotate)" },
    { "key_grace_s", AT_SET_U64, IU(key_grace_s), "60", 86400, 0,
      "how long the previous ZPK/ZAK stay valid after a change (switch.keys valid_to)" },
    /* TLS (switch/swtls.c, docs/switchd.md "TLS"). */
    { "tls_ca", AT_SET_STR, I(tls_ca), "", 0, 0,
      "CA file verifying the issuer's certificate: set = the link uses TLS 1.2/1.3" },
    { "tls_cert", AT_SET_STR, I(tls_cert), "", 0, 0,
      "client certificate presented to the issuer (optional)" },
    { "tls_key", AT_SET_STR, I(tls_key), "", 0, 0, "key of tls_cert" },
    { "tls_server_name", AT_SET_STR, I(tls_server_name), "", 0, 0,
      "name or IP address the issuer's certificate must carry (empty = the host of address)" },
};
#undef I
#undef IU

#define N(t) (sizeof(t) / sizeof((t)[0]))

static void listener_defaults(struct sw_listener_conf *l, const char *name)
{
    char err[128];
    memset(l, 0, sizeof *l);
    if (at_settings_defaults(listener_table, N(listener_table), l, err, sizeof err) != 0)
        return; /* defaults are constants checked by the unit test */
    snprintf(l->name, sizeof l->name, "%s", name);
}

void sw_config_defaults(struct sw_config *conf)
{
    char err[128];
    memset(conf, 0, sizeof *conf);
    if (at_settings_defaults(switch_table, N(switch_table), conf, err, sizeof err) != 0 ||
        at_settings_defaults(hsm_table, N(hsm_table), conf, err, sizeof err) != 0)
        return;
    listener_defaults(&conf->listeners[0], "acq");
    listener_defaults(&conf->listeners[1], "pos");
    strcpy(conf->listeners[1].address, "127.0.0.1:8584");
    strcpy(conf->listeners[1].dialect, "bcd87");
    strcpy(conf->listeners[1].framing, "tpdu");
    conf->n_listeners = 2;
}

struct load_ctx {
    struct sw_config *conf;
    bool listeners_replaced;
    char cur_section[32], cur_name[SW_NAME_LEN];
    void *cur; /* the listener or issuer being filled */
};

static int on_entry(void *arg, const char *section, const char *name, const char *key,
                    const char *value, char *err, size_t errcap)
{
    struct load_ctx *x = arg;
    struct sw_config *c = x->conf;
    bool new_section = strcmp(section, x->cur_section) != 0 || strcmp(name, x->cur_name) != 0;

    if (*section == '\0' || strcmp(section, "switch") == 0) {
        if (at_settings_set(switch_table, N(switch_table), c, key, value, err, errcap) != 0)
            return -1;
        if (strcmp(key, "cutover") == 0 && !at_cutover_parse(c->cutover, &c->cutover_min)) {
            snprintf(err, errcap, "cutover '%s': expected HH:MM, 00:00..23:59 (UTC)", c->cutover);
            return -1;
        }
        return 0;
    }
    if (strcmp(section, "hsm") == 0)
        return at_settings_set(hsm_table, N(hsm_table), c, key, value, err, errcap);

    if (strcmp(section, "listener") != 0 && strcmp(section, "issuer") != 0) {
        snprintf(err, errcap, "unknown section [%s]", section);
        return -1;
    }
    if (*name == '\0' || strlen(name) >= SW_NAME_LEN) {
        snprintf(err, errcap, "[%s NAME] needs a name of 1..%d characters", section,
                 SW_NAME_LEN - 1);
        return -1;
    }
    if (new_section) {
        snprintf(x->cur_section, sizeof x->cur_section, "%s", section);
        snprintf(x->cur_name, sizeof x->cur_name, "%s", name);
        if (strcmp(section, "listener") == 0) {
            if (!x->listeners_replaced) {
                c->n_listeners = 0;
                x->listeners_replaced = true;
            }
            for (size_t i = 0; i < c->n_listeners; i++)
                if (strcmp(c->listeners[i].name, name) == 0) {
                    snprintf(err, errcap, "[listener %s] declared twice", name);
                    return -1;
                }
            if (c->n_listeners == SW_MAX_LISTENERS) {
                snprintf(err, errcap, "more than %d listeners", SW_MAX_LISTENERS);
                return -1;
            }
            listener_defaults(&c->listeners[c->n_listeners], name);
            x->cur = &c->listeners[c->n_listeners++];
        } else {
            for (size_t i = 0; i < c->n_issuers; i++)
                if (strcmp(c->issuers[i].name, name) == 0) {
                    snprintf(err, errcap, "[issuer %s] declared twice", name);
                    return -1;
                }
            if (c->n_issuers == SW_MAX_ISSUERS) {
                snprintf(err, errcap, "more than %d issuer links", SW_MAX_ISSUERS);
                return -1;
            }
            struct sw_issuer_conf *is = &c->issuers[c->n_issuers++];
            memset(is, 0, sizeof *is);
            if (at_settings_defaults(issuer_table, N(issuer_table), is, err, errcap) != 0)
                return -1;
            snprintf(is->name, sizeof is->name, "%s", name);
            x->cur = is;
        }
    }
    if (strcmp(section, "listener") == 0)
        return at_settings_set(listener_table, N(listener_table), x->cur, key, value, err, errcap);
    return at_settings_set(issuer_table, N(issuer_table), x->cur, key, value, err, errcap);
}

int sw_config_load(const char *path, struct sw_config *conf, char *err, size_t errcap)
{
    struct load_ctx x = { .conf = conf };
    return at_conf_load(path, on_entry, &x, err, errcap);
}

static bool known(const char *v, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(v, *names) == 0)
            return true;
    return false;
}

static const char *const framings[] = { "2b", "4a", "tpdu", NULL };

static int check_addr(const char *what, const char *name, const char *addr, char *err,
                      size_t errcap)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;
    if (!at_parse_hostport(addr, &ss, &len, &why)) {
        snprintf(err, errcap, "%s%s%s address '%s': %s", what, *name ? " " : "", name, addr, why);
        return -1;
    }
    return 0;
}

int sw_config_validate(const struct sw_config *c, char *err, size_t errcap)
{
    if (check_addr("metrics", "", c->metrics_address, err, errcap) != 0 ||
        check_addr("hsm", "", c->hsm_address, err, errcap) != 0)
        return -1;
    if ((c->metrics_tls_key[0] || c->metrics_tls_ca[0]) && !c->metrics_tls_cert[0]) {
        snprintf(err, errcap, "metrics_tls_key and metrics_tls_ca need metrics_tls_cert");
        return -1;
    }
    if ((c->hsm_tls_cert[0] || c->hsm_tls_key[0] || c->hsm_tls_server_name[0]) &&
        !c->hsm_tls_ca[0]) {
        snprintf(err, errcap, "[hsm] tls_cert, tls_key and tls_server_name need tls_ca");
        return -1;
    }
    if (at_log_level_parse(c->log_level) < 0) {
        snprintf(err, errcap, "log_level '%s' is not debug|info|warn|error", c->log_level);
        return -1;
    }
    if (c->n_listeners == 0) {
        snprintf(err, errcap, "no [listener] configured");
        return -1;
    }
    if (c->max_inflight == 0 || c->journal_batch_rows == 0 || c->journal_connections == 0 ||
        c->hsm_connections == 0 || c->journal_queue_max == 0 || c->hsm_queue_max == 0) {
        snprintf(err, errcap, "max_inflight, journal_* and hsm caps must be at least 1");
        return -1;
    }
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct sw_listener_conf *l = &c->listeners[i];
        if (check_addr("listener", l->name, l->address, err, errcap) != 0)
            return -1;
        if (!known(l->framing, framings)) {
            snprintf(err, errcap, "listener %s: framing '%s' is not 2b|4a|tpdu", l->name,
                     l->framing);
            return -1;
        }
        if (l->max_connections == 0 || l->max_inflight == 0 || l->max_frame < 64) {
            snprintf(err, errcap, "listener %s: max_connections/max_inflight >= 1, max_frame >= 64",
                     l->name);
            return -1;
        }
        if ((l->tls_key[0] || l->tls_ca[0] || l->tls_acquirer_from[0]) && !l->tls_cert[0]) {
            snprintf(err, errcap,
                     "listener %s: tls_key, tls_ca and tls_acquirer_from need tls_cert", l->name);
            return -1;
        }
        if (l->tls_acquirer_from[0] &&
            (!known(l->tls_acquirer_from, (const char *const[]){ "cn", "ou", "o", NULL }) ||
             !l->tls_ca[0])) {
            snprintf(err, errcap,
                     "listener %s: tls_acquirer_from '%s' is not cn|ou|o, or tls_ca is not set",
                     l->name, l->tls_acquirer_from);
            return -1;
        }
        if (l->max_output_bytes != 0 && l->max_output_bytes < 4096) {
            snprintf(err, errcap,
                     "listener %s: max_output_bytes %llu is below 4096 (0 = no cap): a few "
                     "answers must fit",
                     l->name, (unsigned long long)l->max_output_bytes);
            return -1;
        }
    }
    if (c->stan_slots == 0 || c->stan_slot >= c->stan_slots) {
        snprintf(err, errcap, "stan_slot %llu must be below stan_slots %llu",
                 (unsigned long long)c->stan_slot, (unsigned long long)c->stan_slots);
        return -1;
    }
    if (c->lease_ms < 300) {
        snprintf(err, errcap, "lease_ms must be at least 300");
        return -1;
    }
    if (c->takeover_inflight_ms < c->lease_ms) {
        snprintf(err, errcap, "takeover_inflight_ms must be at least lease_ms");
        return -1;
    }
    for (size_t i = 0; i < c->n_issuers; i++) {
        const struct sw_issuer_conf *is = &c->issuers[i];
        if (check_addr("issuer", is->name, is->address, err, errcap) != 0)
            return -1;
        if (!known(is->framing, framings)) {
            snprintf(err, errcap, "issuer %s: framing '%s' is not 2b|4a|tpdu", is->name,
                     is->framing);
            return -1;
        }
        if ((is->tls_cert[0] || is->tls_key[0] || is->tls_server_name[0]) && !is->tls_ca[0]) {
            snprintf(err, errcap, "issuer %s: tls_cert, tls_key and tls_server_name need tls_ca",
                     is->name);
            return -1;
        }
        if (is->timeout_ms == 0 || is->max_inflight == 0 || is->max_frame < 64 ||
            is->reconnect_min_ms == 0 || is->reconnect_max_ms < is->reconnect_min_ms) {
            snprintf(err, errcap,
                     "issuer %s: timeout_ms/max_inflight >= 1, max_frame >= 64, "
                     "0 < reconnect_min_ms <= reconnect_max_ms",
                     is->name);
            return -1;
        }
    }
    return 0;
}

void sw_config_fd_budget(const struct sw_config *c, struct sw_fd_budget *b)
{
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < c->n_listeners; i++)
        b->terminals += c->listeners[i].max_connections;
    b->issuers = c->n_issuers;
    b->hsm = c->hsm_connections;
    b->database = c->journal_connections + SW_DB_CLIENT_CONNECTIONS + 1;
    b->reserve = SW_FD_RESERVE;
    b->total = b->terminals + b->issuers + b->hsm + b->database + b->reserve;
}

void sw_config_print_help(void *file)
{
    FILE *f = file;
    fprintf(f, "switchd configuration: 'key = value' lines, '#' comments, sections below.\n"
               "Keys before any section belong to [switch].\n\n");
    at_settings_print_help(switch_table, N(switch_table), "switch", f);
    at_settings_print_help(hsm_table, N(hsm_table), "hsm", f);
    at_settings_print_help(listener_table, N(listener_table), "listener NAME   (repeatable)", f);
    at_settings_print_help(issuer_table, N(issuer_table),
                           "issuer NAME     (repeatable; NAME = issuer id)", f);
}
