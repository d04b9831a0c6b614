/* switchd's configuration: one file, INI-like (common/conf.h), every key in a
 * settings table below with its default, so `switchd --help-config` prints the
 * documentation and an unknown key is an error. Defaults run on loopback.
 * Each listener bounds what one terminal connection may hold: an idle
 * timeout, a deadline to complete a frame, a cap per peer address, and a cap
 * plus a deadline on answers it does not read; sw_config_fd_budget() says how
 * many file descriptors the whole configuration may need. */
#ifndef ATLAS_SW_CONFIG_H
#define ATLAS_SW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_MAX_LISTENERS 8
#define SW_MAX_ISSUERS   32
#define SW_NAME_LEN      32

struct sw_listener_conf {
    char name[SW_NAME_LEN];
    char acquirer_id[12]; /* journaled acquirer; empty = [switch] acquirer_id */
    char address[64];
    char dialect[32];
    char framing[16]; /* 2b | 4a | tpdu */
    uint64_t max_connections;
    uint64_t max_inflight; /* per connection */
    uint64_t idle_timeout_s;
    uint64_t max_frame;
    uint64_t frame_timeout_ms;            /* a begun frame must be complete within it; 0 = none */
    uint64_t max_connections_per_address; /* by peer IP, on this listener; 0 = no cap */
    uint64_t max_output_bytes; /* unread answers beyond the kernel's; 0 = no cap (pause) */
    uint64_t write_timeout_ms; /* waiting answers must all be read within it; 0 = none */
    /* TLS (switch/swtls.c): on when tls_cert is set; tls_ca = mutual authentication. */
    char tls_cert[256], tls_key[256], tls_ca[256];
    char tls_acquirer_from[8];         /* "" | cn | ou | o: the subject attribute that must name
                                          the listener's acquirer id */
    uint64_t tls_handshake_timeout_ms; /* an accepted TLS handshake must end within it */
    bool reuseport; /* SO_REUSEPORT: several switchd share the port (docs/switchd.md "Instances") */
};

struct sw_issuer_conf {
    char name[SW_NAME_LEN]; /* = issuers.issuer_id in the database */
    char address[64];
    char dialect[32];
    char framing[16];
    uint64_t timeout_ms;       /* per request, then 91 (or stand-in) + reversal */
    uint64_t timeout_ms_0100;  /* 0100s; 0 = timeout_ms */
    uint64_t timeout_ms_0200;  /* 0200s; 0 = timeout_ms */
    uint64_t timeout_ms_cash;  /* processing code 01 (ATM, cash-out), any MTI; 0 = by MTI */
    bool stand_in;             /* decide in the issuer's place when it cannot (stip.c) */
    uint64_t echo_interval_ms; /* 0800/301 after this much idle */
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    uint64_t max_inflight;
    uint64_t max_frame;
    uint64_t key_change_interval_s; /* scheduled ZPK/ZAK change (docs/keys.md); 0 = none */
    uint64_t key_grace_s;           /* the old keys' validity after a change (switch.keys) */
    /* TLS to the issuer (switch/swtls.c): on when tls_ca is set. */
    char tls_ca[256], tls_cert[256], tls_key[256], tls_server_name[128];
};

struct sw_config {
    /* [switch] (or top level) */
    char acquirer_id[12]; /* default acquirer for listeners (DE 32: up to 11 digits) */
    char log_file[256];
    char log_level[16];
    char metrics_address[64];
    char metrics_tls_cert[256], metrics_tls_key[256], metrics_tls_ca[256]; /* "" = plain HTTP */
    char db[512]; /* libpq conninfo; empty = PG* environment */
    char pan_hmac_key_file[256];
    char pan_seal_key_file[256];
    uint64_t max_inflight; /* global cap on requests in the switch */
    uint64_t drain_timeout_ms;
    uint64_t journal_batch_rows;
    uint64_t journal_flush_us;
    uint64_t journal_connections;
    uint64_t journal_queue_max;
    char spool_dir[256];
    uint64_t dup_window_s;
    uint64_t dup_capacity;
    uint64_t reversal_retry_ms;
    char instance_id[64]; /* owner of this switchd's switch.inflight rows */
    /* Several instances on one database (docs/switchd.md "Instances"): this one's issuer STANs
     * are those with (STAN - 1) % stan_slots == stan_slot; queue rows it claims are leased to it
     * for lease_ms and renewed every lease_ms / 3. */
    uint64_t stan_slot;
    uint64_t stan_slots;
    uint64_t lease_ms;
    /* A dead instance's requests in flight are settled by a live one only after its lease has
     * been expired this long (switch.claim_reversals): its spool may hold answers. */
    uint64_t takeover_inflight_ms;
    uint64_t clock_skew_s; /* tolerated DE 7 error (duplicate checks during outages) */
    char cutover[8];       /* HH:MM UTC: when a business day ends (DE 15; atlas-settle --cutover) */
    unsigned cutover_min;  /* the same in minutes after 00:00 UTC, set by sw_config_load */
    /* [hsm] */
    char hsm_address[64];
    uint64_t hsm_connections;
    uint64_t hsm_header_len;
    uint64_t hsm_timeout_ms;
    uint64_t hsm_queue_max;
    char hsm_tls_ca[256], hsm_tls_cert[256], hsm_tls_key[256], hsm_tls_server_name[128];

    struct sw_listener_conf listeners[SW_MAX_LISTENERS];
    size_t n_listeners;
    struct sw_issuer_conf issuers[SW_MAX_ISSUERS];
    size_t n_issuers;
};

/* Fills conf with defaults: two listeners (acq on 8583 ascii87/2b, pos on
 * 8584 bcd87/tpdu) and no issuer link. */
void sw_config_defaults(struct sw_config *conf);

/* Loads path over the defaults. A file that declares any [listener] replaces
 * the default listeners. Returns 0, or -1 with "file:line: reason" in err. */
__attribute__((warn_unused_result)) int sw_config_load(const char *path, struct sw_config *conf,
                                                       char *err, size_t errcap);

/* Checks cross-key consistency (addresses parse, dialect/framing names are
 * known, caps are non-zero, names unique). 0 or -1 with err. */
__attribute__((warn_unused_result)) int sw_config_validate(const struct sw_config *conf, char *err,
                                                           size_t errcap);

/* Prints every section and key with type, default and meaning. */
void sw_config_print_help(void *file /* FILE * */);

/* PostgreSQL connections of switchd's database client (reference data,
 * reversal queue), besides the journal writer's. */
#define SW_DB_CLIENT_CONNECTIONS 2
/* Descriptors kept for what no key counts: the listening sockets, stdio, the
 * log, the spool and its helper, /metrics scrapes, the event loop's own. */
#define SW_FD_RESERVE 64

/* The file descriptors a configuration may need at once, by owner. */
struct sw_fd_budget {
    uint64_t terminals; /* every listener's max_connections */
    uint64_t issuers;   /* one per issuer link */
    uint64_t hsm;       /* [hsm] connections */
    uint64_t database;  /* journal_connections + the client's + the start-up schema check */
    uint64_t reserve;   /* SW_FD_RESERVE */
    uint64_t total;
};
void sw_config_fd_budget(const struct sw_config *conf, struct sw_fd_budget *b);

#endif
