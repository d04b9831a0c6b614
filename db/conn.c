/* The pipelined connection engine: one libpq connection driven by the libevent loop —
 * non-blocking connect (PQconnectStart/PQconnectPoll), pipeline mode, prepared statements,
 * two job queues (to send, sent awaiting results), reconnect with backoff — and the one table
 * that maps SQLSTATEs to actions. Used by the generic client and the journal writer. */
#include "db_internal.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DBC_CONNECT_TIMEOUT_MS 5000

/* SQLSTATE -> action. Entries of 2 characters match a whole class. The first match wins, so
 * exact codes come before their class. Anything not listed is DB_ACTION_FAIL: the statement or
 * its data is wrong and running it again cannot help. */
static const struct {
    const char *code;
    enum db_action action;
} sqlstate_actions[] = {
    { "40001", DB_ACTION_RETRY },     /* serialization_failure */
    { "40P01", DB_ACTION_RETRY },     /* deadlock_detected */
    { "55P03", DB_ACTION_RETRY },     /* lock_not_available */
    { "57014", DB_ACTION_RETRY },     /* query_canceled (statement_timeout) */
    { "57P01", DB_ACTION_RECONNECT }, /* admin_shutdown (pg_terminate_backend, fast stop) */
    { "57P02", DB_ACTION_RECONNECT }, /* crash_shutdown */
    { "57P03", DB_ACTION_RECONNECT }, /* cannot_connect_now (starting up, recovering) */
    { "25006", DB_ACTION_RECONNECT }, /* read_only_sql_transaction: we reached a standby */
    { "08", DB_ACTION_RECONNECT },    /* connection exception */
    { "53", DB_ACTION_RECONNECT },    /* insufficient resources (disk full, out of memory) */
    { "58", DB_ACTION_RECONNECT },    /* system error (I/O error) */
    { "XX", DB_ACTION_FAIL },         /* internal error */
};

enum db_action db_action_for(const char *sqlstate)
{
    if (!sqlstate || !*sqlstate)
        return DB_ACTION_RECONNECT; /* no answer from a server at all */
    for (size_t i = 0; i < sizeof sqlstate_actions / sizeof sqlstate_actions[0]; i++) {
        size_t n = strlen(sqlstate_actions[i].code);
        if (strncmp(sqlstate, sqlstate_actions[i].code, n) == 0)
            return sqlstate_actions[i].action;
    }
    return DB_ACTION_FAIL;
}

const char *db_strerror(int code)
{
    switch (code) {
    case DB_OK:
        return "ok";
    case DB_SPOOLED:
        return "spooled";
    case DB_CONFLICT:
        return "conflict";
    case DB_E_INVALID:
        return "invalid";
    case DB_E_CONN:
        return "connection";
    case DB_E_SQL:
        return "sql";
    case DB_E_FULL:
        return "queue full";
    case DB_E_CLOSED:
        return "closed";
    case DB_E_SPOOL:
        return "spool";
    case DB_E_SCHEMA:
        return "schema";
    case DB_E_SYS:
        return "system";
    }
    return "unknown";
}

/* Fills err. A server error whose action is RECONNECT counts as a connection error (DB_E_CONN):
 * the server is going away, so the work's fate is the same as if the socket had dropped. */
void dbc_set_error(struct db_error *err, int code, const char *sqlstate, const char *msg)
{
    snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
    err->action = (code == DB_E_SQL) ? db_action_for(err->sqlstate) : DB_ACTION_RECONNECT;
    if (code == DB_E_SQL && err->action == DB_ACTION_RECONNECT)
        code = DB_E_CONN;
    if (code == DB_E_CLOSED || code == DB_E_INVALID)
        err->action = DB_ACTION_FAIL;
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
    /* libpq messages end with a newline; keep log lines single-line. */
    size_t n = strlen(err->message);
    while (n > 0 && (err->message[n - 1] == '\n' || err->message[n - 1] == ' '))
        err->message[--n] = '\0';
}

static void dbc_on_io(evutil_socket_t fd, short what, void *arg);
static void dbc_on_timer(evutil_socket_t fd, short what, void *arg);
static void dbc_pump(struct dbc *c);
static void dbc_broken(struct dbc *c, const char *why);

int dbc_init(struct dbc *c, struct event_base *base, const char *conninfo, unsigned id)
{
    memset(c, 0, sizeof *c);
    c->base = base;
    c->conninfo = conninfo ? conninfo : "";
    c->id = id;
    c->io_fd = -1;
    c->backoff_min_ms = 100;
    c->backoff_max_ms = 5000;
    TAILQ_INIT(&c->to_send);
    TAILQ_INIT(&c->sent);
    c->timer = evtimer_new(base, dbc_on_timer, c);
    return c->timer ? 0 : DB_E_SYS;
}

static void dbc_timer_ms(struct dbc *c, uint32_t ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
}

/* (Re)arms the socket event for what (EV_READ and/or EV_WRITE). libpq may change the socket
 * during connect (e.g. trying another host), so PQsocket() is read again every time. */
static int dbc_arm(struct dbc *c, short what)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->io && fd == c->io_fd && what == c->io_what)
        return 0;
    if (c->io) {
        event_free(c->io);
        c->io = NULL;
    }
    c->io = event_new(c->base, fd, what | EV_PERSIST, dbc_on_io, c);
    if (!c->io || event_add(c->io, NULL) != 0)
        return -1;
    c->io_fd = fd;
    c->io_what = what;
    return 0;
}

static void dbc_disarm(struct dbc *c)
{
    if (c->io) {
        event_free(c->io);
        c->io = NULL;
    }
    c->io_fd = -1;
    c->io_what = 0;
}

/* Server notices (RAISE NOTICE, warnings) go to the log instead of libpq's default, stderr. */
static void dbc_notice(void *arg, const char *message)
{
    struct dbc *c = arg;
    size_t n = strlen(message);
    while (n > 0 && message[n - 1] == '\n')
        n--;
    at_log(AT_LOG_INFO, "db_notice", AT_UINT("conn", c->id), AT_STRN("message", message, n));
}

/* Starts a non-blocking connection attempt; on immediate failure schedules the next one. */
void dbc_start(struct dbc *c)
{
    if (c->state != DBC_IDLE)
        return;
    /* The conninfo string may be a full connection string or URI (expand_dbname); the
     * application name shows who is who in pg_stat_activity unless the caller set one. */
    const char *const keys[] = { "options", "dbname", "fallback_application_name", NULL };
    const char *const vals[] = { c->options ? c->options : "", c->conninfo,
                                 c->app_name ? c->app_name : "atlas", NULL };
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg)
        PQsetNoticeProcessor(c->pg, dbc_notice, c);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        dbc_broken(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = DBC_CONNECTING;
    if (dbc_arm(c, EV_WRITE) != 0) {
        dbc_broken(c, "cannot watch the connection's socket");
        return;
    }
    dbc_timer_ms(c, DBC_CONNECT_TIMEOUT_MS);
}

static int dbc_send_preps(struct dbc_job *job, PGconn *pg);
static void dbc_preps_done(struct dbc_job *job);

/* The prepare job is embedded here so that preparing never allocates. */
struct dbc_prep_job {
    struct dbc_job job;
    struct dbc *c;
    PGresult *res[64];
};

/* The connection is up and its statements prepared: it takes work from now on. */
static void dbc_ready(struct dbc *c)
{
    c->state = DBC_READY;
    c->backoff_ms = 0;
    at_log(AT_LOG_INFO, "db_connected", AT_UINT("conn", c->id));
    if (c->on_state)
        c->on_state(c, true);
    dbc_pump(c);
}

static void dbc_connected(struct dbc *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    evtimer_del(c->timer);
    if (dbc_arm(c, EV_READ) != 0) {
        dbc_broken(c, "cannot watch the connection's socket");
        return;
    }
    if (c->npreps == 0) {
        dbc_ready(c);
        return;
    }
    struct dbc_prep_job *pj = calloc(1, sizeof *pj);
    if (!pj || c->npreps > 64) {
        free(pj);
        dbc_broken(c, "too many prepared statements");
        return;
    }
    pj->c = c;
    pj->job.nstmt = c->npreps;
    pj->job.res = pj->res;
    pj->job.send = dbc_send_preps;
    pj->job.done = dbc_preps_done;
    c->state = DBC_PREPARING;
    /* Prepares go first, ahead of any queued work. */
    TAILQ_INSERT_HEAD(&c->to_send, &pj->job, link);
    dbc_pump(c);
}

static int dbc_send_preps(struct dbc_job *job, PGconn *pg)
{
    struct dbc_prep_job *pj = (struct dbc_prep_job *)job;
    for (unsigned i = 0; i < pj->c->npreps; i++)
        if (PQsendPrepare(pg, pj->c->preps[i].name, pj->c->preps[i].sql, 0, NULL) != 1)
            return -1;
    return 0;
}

static void dbc_preps_done(struct dbc_job *job)
{
    struct dbc_prep_job *pj = (struct dbc_prep_job *)job;
    struct dbc *c = pj->c;
    struct db_error err = job->err;
    for (unsigned i = 0; i < job->nstmt; i++)
        PQclear(job->res[i]);
    free(pj);
    if (err.code != 0) {
        if (err.code != DB_E_CONN)
            at_log(AT_LOG_ERROR, "db_prepare_failed", AT_UINT("conn", c->id),
                   AT_STR("sqlstate", err.sqlstate), AT_STR("error", err.message));
        if (c->state == DBC_PREPARING)
            dbc_broken(c, "prepare failed");
        return;
    }
    if (c->state == DBC_PREPARING)
        dbc_ready(c);
}

static void dbc_connect_poll(struct dbc *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (dbc_arm(c, EV_READ) != 0)
            dbc_broken(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (dbc_arm(c, EV_WRITE) != 0)
            dbc_broken(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        dbc_connected(c);
        break;
    case PGRES_POLLING_FAILED:
    default:
        dbc_broken(c, PQerrorMessage(c->pg));
        break;
    }
}

/* Fails every job of q with code; their done callbacks run (and may queue new work). */
static void dbc_fail_q(struct dbc *c, struct dbc_jobq *q, int code, const char *why)
{
    struct dbc_jobq tmp;
    TAILQ_INIT(&tmp);
    TAILQ_CONCAT(&tmp, q, link);
    if (q == &c->sent)
        c->nsent = 0;
    struct dbc_job *job;
    while ((job = TAILQ_FIRST(&tmp)) != NULL) {
        TAILQ_REMOVE(&tmp, job, link);
        if (job->err.code == 0 || code == DB_E_CONN || code == DB_E_CLOSED) {
            char sqlstate[6];
            memcpy(sqlstate, job->err.sqlstate, sizeof sqlstate);
            dbc_set_error(&job->err, code, NULL, why);
            memcpy(job->err.sqlstate, sqlstate, sizeof sqlstate);
        }
        job->done(job);
    }
}

void dbc_fail_queued(struct dbc *c, int code)
{
    dbc_fail_q(c, &c->to_send, code, code == DB_E_CLOSED ? "closed" : "connection lost");
}

void dbc_take_unsent(struct dbc *c, struct dbc_jobq *q)
{
    struct dbc_job *job = TAILQ_FIRST(&c->to_send);
    /* A half-done prepare job belongs to this connection only. */
    while (job) {
        struct dbc_job *next = TAILQ_NEXT(job, link);
        if (job->done != dbc_preps_done) {
            TAILQ_REMOVE(&c->to_send, job, link);
            TAILQ_INSERT_TAIL(q, job, link);
        }
        job = next;
    }
}

/* The connection is lost or unusable: close it, fail what was sent (its outcome is unknown),
 * tell the owner, schedule a reconnect with exponential backoff. Unsent jobs stay queued. */
static void dbc_broken(struct dbc *c, const char *why)
{
    bool was_up = (c->state == DBC_READY || c->state == DBC_PREPARING);
    snprintf(c->last_error, sizeof c->last_error, "%s", why ? why : "");
    size_t n = strlen(c->last_error);
    while (n > 0 && c->last_error[n - 1] == '\n')
        c->last_error[--n] = '\0';
    dbc_disarm(c);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = DBC_IDLE;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : c->backoff_min_ms;
    if (c->backoff_ms > c->backoff_max_ms)
        c->backoff_ms = c->backoff_max_ms;
    at_log(was_up ? AT_LOG_WARN : AT_LOG_INFO, was_up ? "db_connection_lost" : "db_connect_failed",
           AT_UINT("conn", c->id), AT_STR("error", c->last_error),
           AT_UINT("retry_ms", c->backoff_ms));
    /* Drop a half-done prepare job silently: it is rebuilt at the next connect. */
    struct dbc_job *job = TAILQ_FIRST(&c->to_send);
    if (job && job->done == dbc_preps_done) {
        TAILQ_REMOVE(&c->to_send, job, link);
        free(job);
    }
    dbc_timer_ms(c, c->backoff_ms);
    dbc_fail_q(c, &c->sent, DB_E_CONN, c->last_error);
    if (c->on_state)
        c->on_state(c, false);
}

void dbc_abort(struct dbc *c, const char *why)
{
    if (c->state != DBC_IDLE)
        dbc_broken(c, why);
}

static void dbc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dbc *c = arg;
    if (c->state == DBC_CONNECTING)
        dbc_broken(c, "connect timed out");
    else if (c->state == DBC_IDLE)
        dbc_start(c);
}

/* Takes the results that libpq has ready and hands them to the head job of the sent queue.
 * Results of one statement end with a NULL; a job ends with PGRES_PIPELINE_SYNC. After an error
 * the remaining statements come back as PGRES_PIPELINE_ABORTED up to the Sync. */
static void dbc_read_results(struct dbc *c)
{
    while (c->pg && !TAILQ_EMPTY(&c->sent) && !PQisBusy(c->pg)) {
        struct dbc_job *job = TAILQ_FIRST(&c->sent);
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            if (!job->need_null)
                break; /* nothing more ready */
            job->need_null = false;
            job->idx++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            TAILQ_REMOVE(&c->sent, job, link);
            c->nsent--;
            if (job->err.code == 0 && job->idx < job->nstmt)
                dbc_set_error(&job->err, DB_E_SQL, "XX000", "missing statement results");
            job->done(job);
            continue;
        }
        job->need_null = true;
        if (job->idx >= job->nstmt) {
            PQclear(r);
            continue;
        }
        switch (st) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            if (job->res[job->idx])
                PQclear(job->res[job->idx]);
            job->res[job->idx] = r;
            break;
        case PGRES_PIPELINE_ABORTED:
            PQclear(r);
            break;
        default: /* PGRES_FATAL_ERROR and anything unexpected */
            if (job->err.code == 0)
                dbc_set_error(&job->err, DB_E_SQL, PQresultErrorField(r, PG_DIAG_SQLSTATE),
                              PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
            PQclear(r);
            break;
        }
    }
}

/* Sends what is queued, flushes, and arms the socket: read always (results, server closing),
 * write too while libpq still has output buffered (PQflush returned 1). */
static void dbc_pump(struct dbc *c)
{
    if (!c->pg || (c->state != DBC_READY && c->state != DBC_PREPARING))
        return;
    struct dbc_job *job;
    while ((job = TAILQ_FIRST(&c->to_send)) != NULL) {
        if (c->state == DBC_PREPARING && job->done != dbc_preps_done)
            break; /* real work waits until the statements are prepared */
        if (job->send(job, c->pg) != 0 || PQpipelineSync(c->pg) != 1) {
            dbc_broken(c, PQerrorMessage(c->pg));
            return;
        }
        TAILQ_REMOVE(&c->to_send, job, link);
        job->sent = true;
        TAILQ_INSERT_TAIL(&c->sent, job, link);
        c->nsent++;
    }
    int f = PQflush(c->pg);
    if (f == -1) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    if (dbc_arm(c, f == 1 ? (EV_READ | EV_WRITE) : EV_READ) != 0)
        dbc_broken(c, "cannot watch the connection's socket");
}

static void dbc_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct dbc *c = arg;
    if (c->state == DBC_CONNECTING) {
        dbc_connect_poll(c);
        return;
    }
    if (what & EV_READ) {
        if (PQconsumeInput(c->pg) != 1) {
            /* Results that arrived before the close (e.g. 57P01) still count. */
            dbc_read_results(c);
            if (c->pg)
                dbc_broken(c, PQerrorMessage(c->pg));
            return;
        }
        dbc_read_results(c);
        if (!c->pg)
            return;
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            dbc_broken(c, PQerrorMessage(c->pg));
            return;
        }
    }
    dbc_pump(c);
}

void dbc_submit(struct dbc *c, struct dbc_job *job)
{
    job->idx = 0;
    job->need_null = false;
    job->sent = false;
    memset(&job->err, 0, sizeof job->err);
    TAILQ_INSERT_TAIL(&c->to_send, job, link);
    dbc_pump(c);
}

void dbc_close(struct dbc *c, int code)
{
    dbc_disarm(c);
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = DBC_IDLE;
    c->on_state = NULL;
    struct dbc_job *job = TAILQ_FIRST(&c->to_send);
    if (job && job->done == dbc_preps_done) {
        TAILQ_REMOVE(&c->to_send, job, link);
        free(job);
    }
    dbc_fail_q(c, &c->sent, code, "closed");
    dbc_fail_q(c, &c->to_send, code, "closed");
}
