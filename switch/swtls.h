/* switchd's TLS (docs/switchd.md "TLS"): one context per terminal listener
 * with tls_cert (server; tls_ca = mutual authentication; tls_acquirer_from =
 * the certificate names the listener's acquirer), per issuer link with tls_ca
 * and for the HSM link with [hsm] tls_ca (clients verifying the peer's
 * certificate and name). SIGHUP reloads every context for new connections.
 * Handshake failures are counted here by endpoint and reason for /metrics. */
#ifndef ATLAS_SWTLS_H
#define ATLAS_SWTLS_H

#include <stdbool.h>
#include <stddef.h>

struct sw_server;
struct sw_term;
struct evbuffer;
struct at_stream;

/* Builds the contexts the configuration asks for (listeners, links, HSM).
 * 0, or -1 with the reason (naming the file) in err. */
__attribute__((warn_unused_result)) int sw_tls_start(struct sw_server *srv, char *err,
                                                     size_t errcap);
/* SIGHUP: every context read again from its files; one that fails keeps its
 * previous context (tls_reload_failed says why). */
void sw_tls_reload(struct sw_server *srv);
void sw_tls_free(struct sw_server *srv);

/* A terminal's TLS handshake ended: false (after logging why) when its
 * certificate does not name the listener's acquirer and it must be closed. */
bool sw_tls_session_ok(struct sw_term *t, struct at_stream *s);
/* A stream of endpoint (a listener name, "issuer:NAME") closed: counts a
 * handshake failure by its label when it was one. */
void sw_tls_count_close(struct sw_server *srv, const char *endpoint, struct at_stream *s);
/* HSM link TLS failures are counted from hsm-client's log only. */
void sw_tls_metrics(struct sw_server *srv, struct evbuffer *b);

#endif
