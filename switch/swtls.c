/* switchd's TLS contexts, the subject binding of terminal listeners, and the
 * handshake-failure counters (see swtls.h). */
#include "swtls.h"

#include "switchd.h"

#include "tls.h"
#include "log.h"
#include "parse.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <openssl/objects.h>
#include <stdio.h>
#include <string.h>

/* Handshake failures by endpoint and reason: a handful of endpoints, and
 * OpenSSL's reasons are a finite set; what does not fit is counted as
 * "other" so a hostile peer cannot grow the table. */
#define TLS_ENDPOINTS 48
#define TLS_REASONS   24

struct tls_reason {
    char label[48];
    unsigned long long n;
};

static struct tls_endpoint {
    char name[48];
    unsigned long long handshakes;
    struct tls_reason r[TLS_REASONS];
} endpoints[TLS_ENDPOINTS];
static size_t n_endpoints;

static struct tls_endpoint *endpoint(const char *name)
{
    for (size_t i = 0; i < n_endpoints; i++)
        if (strcmp(endpoints[i].name, name) == 0)
            return &endpoints[i];
    if (n_endpoints == TLS_ENDPOINTS)
        return NULL;
    struct tls_endpoint *e = &endpoints[n_endpoints++];
    snprintf(e->name, sizeof e->name, "%s", name);
    return e;
}

static void count_failure(const char *name, const char *label)
{
    struct tls_endpoint *e = endpoint(name);
    if (!e)
        return;
    for (size_t i = 0; i < TLS_REASONS; i++) {
        struct tls_reason *r = &e->r[i];
        if (!r->label[0])
            snprintf(r->label, sizeof r->label, "%s", i == TLS_REASONS - 1 ? "other" : label);
        if (strcmp(r->label, label) == 0 || i == TLS_REASONS - 1) {
            r->n++;
            return;
        }
    }
}

/* The host part of "host:port" (an issuer's or the HSM's address), the name
 * its certificate must carry when no tls_server_name is configured. */
static void host_of(const char *address, char *out, size_t cap)
{
    snprintf(out, cap, "%s", address);
    char *c = strrchr(out, ':');
    if (c)
        *c = '\0';
    if (out[0] == '[') { /* [::1]:port */
        size_t n = strlen(out);
        memmove(out, out + 1, n);
        if (n > 1 && out[n - 2] == ']')
            out[n - 2] = '\0';
    }
}

static struct at_tls *client_ctx(const char *what, const char *name, const char *address,
                                 const char *ca, const char *cert, const char *key,
                                 const char *server_name, char *err, size_t errcap)
{
    char host[128], why[384];
    if (server_name[0])
        snprintf(host, sizeof host, "%s", server_name);
    else
        host_of(address, host, sizeof host);
    struct at_tls_conf tc = {
        .cert = cert, .key = key, .ca = ca, .server_name = host, .server = false
    };
    struct at_tls *t = at_tls_new(&tc, why, sizeof why);
    if (!t) {
        snprintf(err, errcap, "%s%s%s TLS: %s", what, name[0] ? " " : "", name, why);
        return NULL;
    }
    at_log(AT_LOG_INFO, "tls_config", AT_STR("endpoint", what), AT_STR("name", name),
           AT_STR("ca", ca), AT_STR("cert", cert), AT_STR("server_name", host));
    return t;
}

int sw_tls_start(struct sw_server *srv, char *err, size_t errcap)
{
    const struct sw_config *c = &srv->conf;
    char why[384];
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct sw_listener_conf *lc = &c->listeners[i];
        if (!lc->tls_cert[0])
            continue;
        struct at_tls_conf tc = {
            .cert = lc->tls_cert, .key = lc->tls_key, .ca = lc->tls_ca, .server = true
        };
        if (!(srv->listeners[i].tls = at_tls_new(&tc, why, sizeof why))) {
            snprintf(err, errcap, "listener %s TLS: %s", lc->name, why);
            return -1;
        }
        endpoint(lc->name);
        at_log(AT_LOG_INFO, "tls_config", AT_STR("endpoint", "listener"), AT_STR("name", lc->name),
               AT_STR("cert", lc->tls_cert),
               AT_STR("ca", lc->tls_ca[0] ? lc->tls_ca : "(no client certificate asked)"),
               AT_STR("acquirer_from", lc->tls_acquirer_from));
    }
    for (size_t i = 0; i < c->n_issuers; i++) {
        const struct sw_issuer_conf *ic = &c->issuers[i];
        if (!ic->tls_ca[0])
            continue;
        if (!(srv->links[i].tls =
                  client_ctx("issuer", ic->name, ic->address, ic->tls_ca, ic->tls_cert, ic->tls_key,
                             ic->tls_server_name, err, errcap)))
            return -1;
    }
    if (c->metrics_tls_cert[0]) {
        struct at_tls_conf tc = { .cert = c->metrics_tls_cert,
                                  .key = c->metrics_tls_key,
                                  .ca = c->metrics_tls_ca,
                                  .server = true };
        if (!(srv->metrics_tls = at_tls_new(&tc, why, sizeof why))) {
            snprintf(err, errcap, "metrics TLS: %s", why);
            return -1;
        }
        at_log(AT_LOG_INFO, "tls_config", AT_STR("endpoint", "metrics"),
               AT_STR("cert", c->metrics_tls_cert));
    }
    if (c->hsm_tls_ca[0] &&
        !(srv->hsm_tls = client_ctx("hsm", "", c->hsm_address, c->hsm_tls_ca, c->hsm_tls_cert,
                                    c->hsm_tls_key, c->hsm_tls_server_name, err, errcap)))
        return -1;
    return 0;
}

static void reload_one(struct at_tls *t, const char *what, const char *name)
{
    char why[384];
    if (!t)
        return;
    if (at_tls_reload(t, why, sizeof why) == 0)
        at_log(AT_LOG_INFO, "tls_reloaded", AT_STR("endpoint", what), AT_STR("name", name));
    else
        at_log(AT_LOG_ERROR, "tls_reload_failed", AT_STR("endpoint", what), AT_STR("name", name),
               AT_STR("reason", why),
               AT_STR("action", "new connections keep the previous "
                                "certificate"));
}

void sw_tls_reload(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->conf.n_listeners; i++)
        reload_one(srv->listeners[i].tls, "listener", srv->conf.listeners[i].name);
    for (size_t i = 0; i < srv->conf.n_issuers; i++)
        reload_one(srv->links[i].tls, "issuer", srv->conf.issuers[i].name);
    reload_one(srv->hsm_tls, "hsm", "");
    reload_one(srv->metrics_tls, "metrics", "");
}

void sw_tls_free(struct sw_server *srv)
{
    for (size_t i = 0; i < SW_MAX_LISTENERS; i++) {
        at_tls_free(srv->listeners[i].tls);
        srv->listeners[i].tls = NULL;
    }
    for (size_t i = 0; i < SW_MAX_ISSUERS; i++) {
        at_tls_free(srv->links[i].tls);
        srv->links[i].tls = NULL;
    }
    at_tls_free(srv->hsm_tls);
    srv->hsm_tls = NULL;
    at_tls_free(srv->metrics_tls);
    srv->metrics_tls = NULL;
}

bool sw_tls_session_ok(struct sw_term *t, struct at_stream *s)
{
    const struct sw_listener_conf *lc = t->lst->conf;
    const char *acquirer = lc->acquirer_id[0] ? lc->acquirer_id : t->srv->conf.acquirer_id;
    char session[96], cn[128] = "";
    struct tls_endpoint *e = endpoint(lc->name);
    if (e)
        e->handshakes++;
    at_stream_tls_session(s, session, sizeof session);
    if (at_stream_tls_subject(s, NID_commonName, cn, sizeof cn) != 0)
        snprintf(cn, sizeof cn, "-");
    if (!lc->tls_acquirer_from[0]) {
        at_log(AT_LOG_DEBUG, "tls_session", AT_STR("listener", lc->name),
               AT_STR("peer", at_stream_peer(s)), AT_STR("session", session), AT_STR("cn", cn));
        return true;
    }
    int nid = strcmp(lc->tls_acquirer_from, "cn") == 0   ? NID_commonName
              : strcmp(lc->tls_acquirer_from, "ou") == 0 ? NID_organizationalUnitName
                                                         : NID_organizationName;
    char named[128];
    if (at_stream_tls_subject(s, nid, named, sizeof named) != 0)
        snprintf(named, sizeof named, "(none)");
    if (strcmp(named, acquirer) == 0) {
        at_log(AT_LOG_DEBUG, "tls_session", AT_STR("listener", lc->name),
               AT_STR("peer", at_stream_peer(s)), AT_STR("session", session), AT_STR("cn", cn),
               AT_STR("acquirer", acquirer));
        return true;
    }
    at_log(AT_LOG_WARN, "tls_acquirer_mismatch", AT_STR("listener", lc->name),
           AT_STR("peer", at_stream_peer(s)), AT_STR("cn", cn),
           AT_STR("attribute", lc->tls_acquirer_from), AT_STR("names", named),
           AT_STR("acquirer", acquirer));
    count_failure(lc->name, "acquirer_mismatch");
    return false;
}

void sw_tls_count_close(struct sw_server *srv, const char *endpoint_name, struct at_stream *s)
{
    (void)srv;
    const char *label = at_stream_tls_failure(s);
    if (label)
        count_failure(endpoint_name, label);
}

void sw_tls_metrics(struct sw_server *srv, struct evbuffer *b)
{
    (void)srv;
    if (n_endpoints == 0)
        return;
    evbuffer_add_printf(b, "# HELP atlas_tls_handshakes_total TLS sessions established on a "
                           "terminal listener.\n# TYPE atlas_tls_handshakes_total counter\n");
    for (size_t i = 0; i < n_endpoints; i++)
        if (strncmp(endpoints[i].name, "issuer:", 7) != 0)
            evbuffer_add_printf(b, "atlas_tls_handshakes_total{listener=\"%s\"} %llu\n",
                                endpoints[i].name, endpoints[i].handshakes);
    evbuffer_add_printf(b, "# HELP atlas_tls_handshake_failures_total TLS handshakes that failed "
                           "(or sessions refused: acquirer_mismatch), by listener (issuer:NAME "
                           "for an issuer link) and OpenSSL's reason.\n"
                           "# TYPE atlas_tls_handshake_failures_total counter\n");
    for (size_t i = 0; i < n_endpoints; i++)
        for (size_t j = 0; j < TLS_REASONS && endpoints[i].r[j].label[0]; j++)
            evbuffer_add_printf(b,
                                "atlas_tls_handshake_failures_total{listener=\"%s\",reason=\"%s\"}"
                                " %llu\n",
                                endpoints[i].name, endpoints[i].r[j].label, endpoints[i].r[j].n);
}
