/* atlas-reconcile's reads: the window, the switch's journal / reversal queue / in-flight rows,
 * the issuer's requests / ledger / holds / wallets, into an rc_ctx (recon.h). Blocking libpq:
 * this is a command-line tool, not a daemon. Every query runs inside one read-only
 * REPEATABLE READ transaction per database (rc_fetch_begin), so each side is one snapshot. */
#ifndef ATLAS_RECON_FETCH_H
#define ATLAS_RECON_FETCH_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "recon.h"

/* The window, normalised by PostgreSQL: [from, to) for the switch's rows (created_at), and
 * [lo, hi) = [from - slack, to + slack) for the issuer's bookings. issuer ("" = every one)
 * narrows the switch's rows to those of one issuer (issuer_id), whose ledger the issuer
 * database is: with several issuers each has its own, and its request keys (issuer STANs are
 * per link) can be another issuer's too. */
struct rc_window {
    char from[40], to[40], lo[40], hi[40]; /* ISO 8601, UTC, microseconds */
    uint64_t to_us;                        /* `to` as Unix µs */
    unsigned slack_s;
    char issuer[33];
};

/* Starts the read-only snapshot on conn (session time zone UTC). 0 or -1 with err. */
__attribute__((warn_unused_result)) int rc_fetch_begin(PGconn *conn, char *err, size_t errcap);

/* Normalises the options (NULL = default: to = now, from = to - 24 h; issuer NULL = every
 * issuer). 0 or -1 with err (unparsable timestamp, from not before to). */
__attribute__((warn_unused_result)) int rc_fetch_window(PGconn *sw, const char *from,
                                                        const char *to, unsigned slack_s,
                                                        const char *issuer, struct rc_window *w,
                                                        char *err, size_t errcap);

/* Journal rows created in [lo, hi) (those in [from, to) are checked, the others context) with
 * their reversals; reversal rows in [lo, hi) that have no journal row; every in-flight row —
 * of w->issuer only when it is set (a row without an issuer, which reached none, then is not
 * read). */
__attribute__((warn_unused_result)) int rc_fetch_switch(PGconn *sw, const struct rc_window *w,
                                                        struct rc_ctx *c, char *err, size_t errcap);

/* Journal rows by identity for rc_wanted_idents (the record's requests, reversals' originals). */
__attribute__((warn_unused_result)) int rc_fetch_switch_idents(PGconn *sw,
                                                               const struct rc_window *w,
                                                               struct rc_ctx *c, char *err,
                                                               size_t errcap);

/* Every transfer (switch.transfers) created in [from, to) — of w->issuer, as sender's or
 * recipient's issuer, when it is set — checked, and those rc_wanted_xfer_idents names (the
 * senders of loaded journal rows, the record's transfer lines) for lookups; each with its
 * sender's journal row, its legs' journal and reversal rows and whether a terminal reversal of
 * it was acknowledged, in one statement of the snapshot. */
__attribute__((warn_unused_result)) int rc_fetch_transfers(PGconn *sw, const struct rc_window *w,
                                                           struct rc_ctx *c, char *err,
                                                           size_t errcap);

/* The issuer's rows under every key of rc_wanted_keys (and 'rev:' of each), whenever booked,
 * then every other request, ledger entry and hold booked in [lo, hi). */
__attribute__((warn_unused_result)) int rc_fetch_issuer(PGconn *iss, const struct rc_window *w,
                                                        struct rc_ctx *c, char *err, size_t errcap);

/* For issuer keys no loaded switch row names (rc_attribute): looks for them in the whole
 * journal, reversal queue and in-flight table (rows of w->issuer when it is set), and marks
 * those found (rc_mark_named). */
__attribute__((warn_unused_result)) int rc_fetch_named(PGconn *sw, const struct rc_window *w,
                                                       struct rc_ctx *c, char *err, size_t errcap);

/* The wallets the issuer's rows name, and those holding the cards of switch rows the issuer has
 * no row for (by PAN hash); their currency, masked PAN and whether balance = ledger. */
__attribute__((warn_unused_result)) int rc_fetch_wallets(PGconn *iss, struct rc_ctx *c, char *err,
                                                         size_t errcap);

#endif
