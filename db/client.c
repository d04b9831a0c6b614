/* The generic asynchronous client: a pool of pipelined connections for reference-data loads and
 * the issuer's wallet transactions. Each db_exec() is one job = one transaction (statements up to
 * a Sync), dispatched to the least busy ready connection, retried on transient SQLSTATEs. */
#include "db_internal.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DB_CLIENT_MAX_STMTS 34 /* a wallet batch: 32 ops + its lock and batch calls (0017) */
#define DB_CLIENT_RETRIES   3

struct db_client {
    struct event_base *base;
    char *conninfo;
    unsigned nconn;
    struct dbc *conns;
    struct dbc_prep *preps;
    unsigned npreps;
    struct dbc_jobq waiting; /* jobs with no connection to go to yet */
    unsigned queued;         /* jobs accepted and not yet called back */
    unsigned max_queued;
    bool down; /* every connection failed since one was last up: fail work at once */
};

struct cstmt {
    const char *sql;
    const char *prepared;
    int nparams;
    const char **values;
};

/* A job and everything it refers to live in one allocation (freed after its callback). */
struct cjob {
    struct dbc_job job;
    struct db_client *client;
    db_reply_cb cb;
    void *arg;
    unsigned retries;
    struct cstmt *stmts;
};

static void client_dispatch(struct db_client *c);

/* The error of a job failed at once while no connection is up (db_error_never_sent). */
static const char never_sent[] = "database unreachable";

bool db_error_never_sent(const struct db_error *err)
{
    return err && err->code == DB_E_CONN && strcmp(err->message, never_sent) == 0;
}

static void client_on_state(struct dbc *conn, bool up)
{
    struct db_client *c = conn->owner;
    if (!up)
        dbc_take_unsent(conn, &c->waiting);
    c->down = !db_client_ready(c);
    client_dispatch(c);
}

int db_client_new(struct event_base *base, const struct db_client_opts *opts,
                  struct db_client **out)
{
    if (!base || !opts || !out)
        return DB_E_INVALID;
    struct db_client *c = calloc(1, sizeof *c);
    if (!c)
        return DB_E_SYS;
    c->base = base;
    c->nconn = opts->connections ? opts->connections : 1;
    c->max_queued = opts->max_queued ? opts->max_queued : 10000;
    c->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
    c->conns = calloc(c->nconn, sizeof *c->conns);
    TAILQ_INIT(&c->waiting);
    if (!c->conninfo || !c->conns) {
        free(c->conninfo);
        free(c->conns);
        free(c);
        return DB_E_SYS;
    }
    for (unsigned i = 0; i < c->nconn; i++) {
        if (dbc_init(&c->conns[i], base, c->conninfo, i) != 0) {
            c->nconn = i;
            db_client_free(c);
            return DB_E_SYS;
        }
        c->conns[i].owner = c;
        c->conns[i].app_name = opts->app_name ? opts->app_name : "atlas-client";
        c->conns[i].options = opts->server_options;
        c->conns[i].on_state = client_on_state;
        if (opts->reconnect_min_ms)
            c->conns[i].backoff_min_ms = opts->reconnect_min_ms;
        if (opts->reconnect_max_ms)
            c->conns[i].backoff_max_ms = opts->reconnect_max_ms;
    }
    /* Connecting starts from the loop (a zero timer), so that db_client_prepare() calls made
     * right after creation are in place before the first connection is up. */
    for (unsigned i = 0; i < c->nconn; i++) {
        struct timeval tv = { 0, 0 };
        evtimer_add(c->conns[i].timer, &tv);
    }
    *out = c;
    return 0;
}

int db_client_prepare(struct db_client *c, const char *name, const char *sql)
{
    if (!c || !name || !*name || !sql || c->npreps >= 64)
        return DB_E_INVALID;
    struct dbc_prep *p = realloc(c->preps, (c->npreps + 1) * sizeof *p);
    if (!p)
        return DB_E_SYS;
    c->preps = p;
    p[c->npreps].name = strdup(name);
    p[c->npreps].sql = strdup(sql);
    if (!p[c->npreps].name || !p[c->npreps].sql) {
        free((char *)p[c->npreps].name);
        free((char *)p[c->npreps].sql);
        return DB_E_SYS;
    }
    c->npreps++;
    for (unsigned i = 0; i < c->nconn; i++) {
        c->conns[i].preps = c->preps;
        c->conns[i].npreps = c->npreps;
    }
    return 0;
}

bool db_client_ready(const struct db_client *c)
{
    for (unsigned i = 0; i < c->nconn; i++)
        if (c->conns[i].state == DBC_READY)
            return true;
    return false;
}

void db_client_free(struct db_client *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nconn; i++)
        dbc_close(&c->conns[i], DB_E_CLOSED);
    struct dbc_job *job;
    while ((job = TAILQ_FIRST(&c->waiting)) != NULL) {
        TAILQ_REMOVE(&c->waiting, job, link);
        dbc_set_error(&job->err, DB_E_CLOSED, NULL, "client closed");
        job->done(job);
    }
    for (unsigned i = 0; i < c->npreps; i++) {
        free((char *)c->preps[i].name);
        free((char *)c->preps[i].sql);
    }
    free(c->preps);
    free(c->conns);
    free(c->conninfo);
    free(c);
}

/* Gives each waiting job to the ready connection with the least work queued on it. */
static void client_dispatch(struct db_client *c)
{
    struct dbc_job *job;
    while ((job = TAILQ_FIRST(&c->waiting)) != NULL) {
        struct dbc *best = NULL;
        unsigned best_load = 0;
        for (unsigned i = 0; i < c->nconn; i++) {
            struct dbc *conn = &c->conns[i];
            if (conn->state != DBC_READY)
                continue;
            unsigned load = conn->nsent;
            struct dbc_job *j;
            TAILQ_FOREACH(j, &conn->to_send, link)
            load++;
            if (!best || load < best_load) {
                best = conn;
                best_load = load;
            }
        }
        if (!best)
            break;
        TAILQ_REMOVE(&c->waiting, job, link);
        dbc_submit(best, job);
    }
    if (!c->down || TAILQ_EMPTY(&c->waiting))
        return;
    /* The database is unreachable: callers get DB_E_CONN now rather than waiting unboundedly. */
    struct dbc_jobq failing;
    TAILQ_INIT(&failing);
    TAILQ_CONCAT(&failing, &c->waiting, link);
    while ((job = TAILQ_FIRST(&failing)) != NULL) {
        TAILQ_REMOVE(&failing, job, link);
        dbc_set_error(&job->err, DB_E_CONN, NULL, never_sent);
        job->done(job);
    }
}

static int cjob_send(struct dbc_job *job, PGconn *pg)
{
    struct cjob *cj = (struct cjob *)job;
    for (unsigned i = 0; i < job->nstmt; i++) {
        const struct cstmt *s = &cj->stmts[i];
        int ok = s->prepared
                     ? PQsendQueryPrepared(pg, s->prepared, s->nparams, s->values, NULL, NULL, 0)
                     : PQsendQueryParams(pg, s->sql, s->nparams, NULL, s->values, NULL, NULL, 0);
        if (ok != 1)
            return -1;
    }
    return 0;
}

static void cjob_clear_results(struct dbc_job *job)
{
    for (unsigned i = 0; i < job->nstmt; i++) {
        PQclear(job->res[i]);
        job->res[i] = NULL;
    }
}

static void cjob_done(struct dbc_job *job)
{
    struct cjob *cj = (struct cjob *)job;
    struct db_client *c = cj->client;
    if (job->err.code == DB_E_SQL && job->err.action == DB_ACTION_RETRY &&
        cj->retries < DB_CLIENT_RETRIES) {
        cj->retries++;
        at_log(AT_LOG_INFO, "db_retry", AT_STR("sqlstate", job->err.sqlstate),
               AT_UINT("attempt", cj->retries));
        cjob_clear_results(job);
        memset(&job->err, 0, sizeof job->err);
        TAILQ_INSERT_TAIL(&c->waiting, job, link);
        client_dispatch(c);
        return;
    }
    if (job->err.code != 0) /* partial results of a failed transaction mean nothing */
        cjob_clear_results(job);
    struct db_reply reply = { .err = &job->err, .n = job->nstmt, .res = job->res };
    c->queued--;
    cj->cb(cj->arg, &reply);
    cjob_clear_results(job);
    free(cj);
}

int db_exec(struct db_client *c, const struct db_stmt *stmts, unsigned n, db_reply_cb cb, void *arg)
{
    if (!c || !stmts || n == 0 || n > DB_CLIENT_MAX_STMTS || !cb)
        return DB_E_INVALID;
    if (c->queued >= c->max_queued)
        return DB_E_FULL;
    /* Size the single allocation: header, statements, result slots, value pointers, strings. */
    size_t size = sizeof(struct cjob) + n * sizeof(struct cstmt) + n * sizeof(PGresult *);
    for (unsigned i = 0; i < n; i++) {
        if ((!stmts[i].sql) == (!stmts[i].prepared) || stmts[i].nparams < 0 ||
            stmts[i].nparams > 65535 || (stmts[i].nparams > 0 && !stmts[i].values))
            return DB_E_INVALID;
        size += (size_t)stmts[i].nparams * sizeof(char *);
        size += strlen(stmts[i].sql ? stmts[i].sql : stmts[i].prepared) + 1;
        for (int k = 0; k < stmts[i].nparams; k++)
            if (stmts[i].values[k])
                size += strlen(stmts[i].values[k]) + 1;
    }
    struct cjob *cj = calloc(1, size);
    if (!cj)
        return DB_E_SYS;
    char *p = (char *)(cj + 1);
    cj->stmts = (struct cstmt *)p;
    p += n * sizeof(struct cstmt);
    cj->job.res = (PGresult **)p;
    p += n * sizeof(PGresult *);
    for (unsigned i = 0; i < n; i++) {
        struct cstmt *s = &cj->stmts[i];
        s->nparams = stmts[i].nparams;
        s->values = (const char **)p;
        p += (size_t)s->nparams * sizeof(char *);
    }
    for (unsigned i = 0; i < n; i++) {
        struct cstmt *s = &cj->stmts[i];
        const char *text = stmts[i].sql ? stmts[i].sql : stmts[i].prepared;
        size_t len = strlen(text) + 1;
        memcpy(p, text, len);
        if (stmts[i].sql)
            s->sql = p;
        else
            s->prepared = p;
        p += len;
        for (int k = 0; k < s->nparams; k++) {
            if (!stmts[i].values[k]) {
                s->values[k] = NULL;
                continue;
            }
            len = strlen(stmts[i].values[k]) + 1;
            memcpy(p, stmts[i].values[k], len);
            s->values[k] = p;
            p += len;
        }
    }
    cj->client = c;
    cj->cb = cb;
    cj->arg = arg;
    cj->job.nstmt = n;
    cj->job.send = cjob_send;
    cj->job.done = cjob_done;
    c->queued++;
    TAILQ_INSERT_TAIL(&c->waiting, &cj->job, link);
    client_dispatch(c);
    return 0;
}

int db_query(struct db_client *c, const char *sql, int nparams, const char *const *values,
             db_reply_cb cb, void *arg)
{
    struct db_stmt s = { .sql = sql, .nparams = nparams, .values = values };
    return db_exec(c, &s, 1, cb, arg);
}
