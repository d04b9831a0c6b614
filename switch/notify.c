/* Reference-data reload on every instance: one libpq connection of its own, in the event loop,
 * LISTENs on channel atlas_refdata; a NOTIFY on it (migration 0016's triggers on the reference
 * tables, or an operator's `NOTIFY atlas_refdata`) reloads the reference data as SIGHUP does.
 * The connection is separate from the pipelined database client because a LISTEN session
 * must stay one session: the client's connections come and go and run batches. A lost
 * connection is retried every second; after each (re)connection the data is reloaded once,
 * since a NOTIFY sent while it was down is not delivered later. */
#include "switchd.h"

#include "log.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdlib.h>

enum notify_state {
    NOTIFY_IDLE,       /* no connection; retry_ev is armed */
    NOTIFY_CONNECTING, /* PQconnectPoll in progress */
    NOTIFY_LISTENING,  /* LISTEN sent or done: waiting for notifications */
    NOTIFY_state_max
};

struct sw_notify {
    struct sw_server *srv;
    enum notify_state state;
    PGconn *pg;
    struct event *sock_ev;  /* the connection's socket (re-created per socket) */
    struct event *retry_ev; /* reconnect timer; also the reload retry while one is running */
    bool reload_wanted;     /* a notification came while a reload ran: reload again after it */
    bool logged_down;
    bool listened_before; /* a previous session listened: notifications may have been missed */
};

static void connect_start(struct sw_notify *n);

static void arm_retry(struct sw_notify *n, unsigned ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(n->retry_ev, &tv);
}

/* Every way the connection ends: logged once per outage, retried in a second. */
static void drop(struct sw_notify *n, const char *why)
{
    if (!n->logged_down)
        at_log(AT_LOG_WARN, "refdata_listen_down", AT_STR("reason", why),
               AT_STR("action", "retrying every second; SIGHUP still reloads"));
    n->logged_down = true;
    if (n->sock_ev) {
        event_free(n->sock_ev);
        n->sock_ev = NULL;
    }
    if (n->pg) {
        PQfinish(n->pg);
        n->pg = NULL;
    }
    n->state = NOTIFY_IDLE;
    arm_retry(n, 1000);
}

static void reload(struct sw_notify *n, const char *why)
{
    struct sw_server *srv = n->srv;
    if (srv->ref_loading) { /* a load already runs: it may have read the old rows */
        n->reload_wanted = true;
        arm_retry(n, 200);
        return;
    }
    n->reload_wanted = false;
    at_log(AT_LOG_INFO, "reload", AT_STR("what", "reference data reloading"), AT_STR("why", why));
    if (sw_ref_reload(srv) != 0)
        at_log(AT_LOG_ERROR, "reload_failed", AT_STR("reason", "database queue full"));
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

static int watch(struct sw_notify *n, short what)
{
    if (n->sock_ev)
        event_free(n->sock_ev);
    n->sock_ev = event_new(n->srv->base, PQsocket(n->pg), what, on_socket, n);
    return n->sock_ev && event_add(n->sock_ev, NULL) == 0 ? 0 : -1;
}

static void poll_connect(struct sw_notify *n)
{
    switch (PQconnectPoll(n->pg)) {
    case PGRES_POLLING_READING:
        if (watch(n, EV_READ) != 0)
            drop(n, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(n, EV_WRITE) != 0)
            drop(n, "cannot watch the socket");
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        drop(n, PQerrorMessage(n->pg));
        return;
    }
    if (PQsetnonblocking(n->pg, 1) != 0 || PQsendQuery(n->pg, "LISTEN atlas_refdata") != 1 ||
        watch(n, EV_READ | EV_PERSIST) != 0) {
        drop(n, PQerrorMessage(n->pg));
        return;
    }
    n->state = NOTIFY_LISTENING;
    /* A 21-byte query on a fresh connection: the socket's buffer takes it whole (PQflush 0);
     * anything else is a connection not worth keeping. */
    if (PQflush(n->pg) != 0) {
        drop(n, "LISTEN not sent");
        return;
    }
    if (n->logged_down)
        at_log(AT_LOG_INFO, "refdata_listen_up", AT_STR("channel", "atlas_refdata"));
    n->logged_down = false;
    /* A NOTIFY sent while no session listened is lost: read the tables once after an outage
     * (the first session starts after the start's own load). */
    if (n->listened_before)
        reload(n, "listen connection re-established");
    n->listened_before = true;
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sw_notify *n = arg;
    (void)fd;
    (void)what;
    if (n->state == NOTIFY_CONNECTING) {
        poll_connect(n);
        return;
    }
    if (PQconsumeInput(n->pg) != 1) {
        drop(n, PQerrorMessage(n->pg));
        return;
    }
    while (!PQisBusy(n->pg)) { /* the LISTEN's result, then nothing */
        PGresult *r = PQgetResult(n->pg);
        if (!r)
            break;
        bool bad = PQresultStatus(r) != PGRES_COMMAND_OK;
        PQclear(r);
        if (bad) {
            drop(n, "LISTEN refused");
            return;
        }
    }
    bool got = false;
    PGnotify *nf;
    while ((nf = PQnotifies(n->pg)) != NULL) {
        got = true;
        PQfreemem(nf);
    }
    if (got)
        reload(n, "NOTIFY atlas_refdata");
}

static void connect_start(struct sw_notify *n)
{
    const char *const keys[] = { "dbname", "fallback_application_name", NULL };
    const char *const vals[] = { n->srv->conf.db, "switchd-listen", NULL };
    n->pg = PQconnectStartParams(keys, vals, 1);
    if (!n->pg || PQstatus(n->pg) == CONNECTION_BAD) {
        drop(n, n->pg ? PQerrorMessage(n->pg) : "out of memory");
        return;
    }
    n->state = NOTIFY_CONNECTING;
    if (watch(n, EV_WRITE) != 0)
        drop(n, "cannot watch the socket");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct sw_notify *n = arg;
    (void)fd;
    (void)what;
    if (n->state == NOTIFY_IDLE)
        connect_start(n);
    else if (n->reload_wanted)
        reload(n, "NOTIFY atlas_refdata");
}

int sw_notify_start(struct sw_server *srv)
{
    struct sw_notify *n = calloc(1, sizeof *n);
    if (!n)
        return -1;
    n->srv = srv;
    n->retry_ev = evtimer_new(srv->base, on_retry, n);
    if (!n->retry_ev) {
        free(n);
        return -1;
    }
    srv->notify = n;
    connect_start(n);
    return 0;
}

void sw_notify_free(struct sw_server *srv)
{
    struct sw_notify *n = srv->notify;
    if (!n)
        return;
    if (n->sock_ev)
        event_free(n->sock_ev);
    event_free(n->retry_ev);
    if (n->pg)
        PQfinish(n->pg);
    free(n);
    srv->notify = NULL;
}
