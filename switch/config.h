/* switchd's configuration: one file, INI-like (common/conf.h), every key in a
 * settings table below with its default, so `switchd --help-config` prints the
 * documentation and an unknown key is an error. Defaults run on loopback. */
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
};

struct sw_issuer_conf {
    char name[SW_NAME_LEN]; /* = issuers.issuer_id in the database */
    char address[64];
    char dialect[32];
    char framing[16];
    uint64_t timeout_ms;       /* per request, then 91 + reversal */
    uint64_t echo_interval_ms; /* 0800/301 after this much idle */
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    uint64_t max_inflight;
    uint64_t max_frame;
};

struct sw_config {
    /* [switch] (or top level) */
    char acquirer_id[12]; /* default acquirer for listeners (DE 32: up to 11 digits) */
    char log_file[256];
    char log_level[16];
    char metrics_address[64];
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
    char instance_id[64];  /* owner of this switchd's switch.inflight rows */
    uint64_t clock_skew_s; /* tolerated DE 7 error (duplicate checks during outages) */
    /* [hsm] */
    char hsm_address[64];
    uint64_t hsm_connections;
    uint64_t hsm_header_len;
    uint64_t hsm_timeout_ms;
    uint64_t hsm_queue_max;

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

#endif
