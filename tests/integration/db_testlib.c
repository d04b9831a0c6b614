/* Helpers for the db integration tests (see db_testlib.h). */
#include "db_testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "testsupport.h"

const char *dbt_src(void)
{
    const char *s = getenv("ATLAS_SRC");
    return s && *s ? s : ".";
}

void dbt_utc_today(char day[11], char *month)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(day, 11, "%Y-%m-%d", &tm);
    if (month)
        strftime(month, 11, "%Y-%m-01", &tm);
}

bool dbt_env_names_cluster(const char *test)
{
    if (getenv("PGHOST") || getenv("PGDATABASE"))
        return true;
    fprintf(stderr, "%s: no PG* environment; run `eval \"$(db/pg.sh env)\"`\n", test);
    return false;
}

PGconn *dbt_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo ? conninfo : "");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "dbt: connect failed: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

long long dbt_scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "dbt: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return v;
}

int dbt_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "dbt: %.200s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return rc;
}

const char *dbt_create(const char *tag)
{
    static char conninfo[256];
    static unsigned seq;
    char name[64], sql[160];
    snprintf(name, sizeof name, "atlas_t_%s_%d_%u", tag, (int)getpid(), seq++);
    PGconn *admin = dbt_connect("");
    if (!admin)
        return NULL;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(admin, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "dbt: %s", PQerrorMessage(admin));
    PQclear(r);
    if (ok) { /* every session of it counts its planning (dbt_plans) */
        snprintf(sql, sizeof sql, "ALTER DATABASE %s SET pg_stat_statements.track_planning = on",
                 name);
        ok = dbt_exec(admin, sql) == 0;
    }
    PQfinish(admin);
    if (!ok)
        return NULL;
    snprintf(conninfo, sizeof conninfo, "dbname=%s", name);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/db/migrations", dbt_src());
    struct db_error err = { 0 };
    if (db_migrate_at(conninfo, dir, NULL, NULL, &err) != 0) {
        fprintf(stderr, "dbt: migrate: %s\n", err.message);
        return NULL;
    }
    return conninfo;
}

int dbt_plans(PGconn *c, const char *prefix, long long *plans, long long *calls)
{
    *plans = *calls = -1;
    if (dbt_exec(c, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements") != 0)
        return -1;
    const char *v[1] = { prefix };
    PGresult *r = PQexecParams(c,
                               "SELECT coalesce(sum(plans), 0), coalesce(sum(calls), 0)"
                               " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                               " WHERE d.datname = current_database()"
                               " AND starts_with(s.query, $1)",
                               1, NULL, v, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *plans = atoll(PQgetvalue(r, 0, 0));
        *calls = atoll(PQgetvalue(r, 0, 1));
        rc = 0;
    } else {
        fprintf(stderr, "dbt: pg_stat_statements: %s(the cluster must preload it: db/pg.sh does)\n",
                PQerrorMessage(c));
    }
    PQclear(r);
    return rc;
}

void dbt_drop(const char *conninfo)
{
    const char *name = strstr(conninfo, "dbname=");
    if (!name)
        return;
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name + 7);
    PGconn *admin = dbt_connect("");
    if (admin) {
        PQclear(PQexec(admin, sql));
        PQfinish(admin);
    }
}

struct until {
    struct event_base *base;
    bool (*cond)(void *);
    void *arg;
    uint64_t deadline;
    bool timed_out;
};

static void until_tick(evutil_socket_t fd, short what, void *p)
{
    struct until *u = p;
    if (u->cond(u->arg))
        event_base_loopbreak(u->base);
    else if (at_mono_ns() > u->deadline) {
        u->timed_out = true;
        event_base_loopbreak(u->base);
    }
}

int dbt_run_until(struct event_base *base, bool (*cond)(void *), void *arg, int timeout_ms)
{
    struct until u = { base, cond, arg, at_mono_ns() + (uint64_t)timeout_ms * 1000000ull, false };
    if (cond(arg))
        return 0;
    struct event *tick = event_new(base, -1, EV_PERSIST, until_tick, &u);
    struct timeval tv = { 0, 2000 };
    event_add(tick, &tv);
    event_base_dispatch(base);
    event_free(tick);
    return u.timed_out ? -1 : 0;
}

void dbt_record(struct db_auth_record *rec, unsigned run, unsigned i)
{
    db_auth_record_init(rec);
    uint64_t now = at_wall_us();
    snprintf(rec->transmission_time, sizeof rec->transmission_time, "1126%06u", run % 1000000);
    db_request_date(rec->transmission_time, now, rec->request_date);
    snprintf(rec->acquirer_id, sizeof rec->acquirer_id, "ACQ%u", run % 100000000);
    snprintf(rec->terminal_id, sizeof rec->terminal_id, "T%07u", (i / 1000000) % 10000000);
    snprintf(rec->stan, sizeof rec->stan, "%06u", i % 1000000);
    memcpy(rec->mti, "0200", 5);
    snprintf(rec->rrn, sizeof rec->rrn, "%012u", i);
    memcpy(rec->issuer_id, "WALLET1", 8);
    memcpy(rec->processing_code, "000000", 7);
    rec->amount_minor = 1000 + i;
    rec->currency = 504;
    memcpy(rec->response_code, "00", 3);
    memcpy(rec->auth_code, "A1B2C3", 7);
    memcpy(rec->pan_masked, "476173******0119", 17);
    for (int k = 0; k < 32; k++)
        rec->pan_hmac[k] = (uint8_t)(k * 7 + i);
    rec->has_pan_hmac = true;
    rec->outcome = DB_OUTCOME_APPROVED;
    rec->created_us = now;
    rec->lat_total_us = 1500;
    rec->lat_issuer_us = 900;
}

int dbt_cluster_ctl(const struct dbt_cluster *c, const char *verb)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "%s '%s' %s >/dev/null", c->env, c->pgsh, verb);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs pg.sh verb (an `env` verb) on the cluster and reads its lines `export NAME='value'`:
 * each exported when export_env, PGHOST's value into host (when not NULL). 0 or -1. */
static int cluster_env(const struct dbt_cluster *c, const char *verb, bool export_env, char *host,
                       size_t hostcap)
{
    char cmd[3000], line[1200];
    snprintf(cmd, sizeof cmd, "%s '%s' %s", c->env, c->pgsh, verb);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '='), *name = line + 7;
        if (strncmp(line, "export ", 7) != 0 || !eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        v[strcspn(v, "\n")] = '\0';
        if (*v == '\'') {
            v++;
            v[strcspn(v, "'")] = '\0';
        }
        if (host && strcmp(name, "PGHOST") == 0)
            snprintf(host, hostcap, "%s", v);
        if (export_env)
            setenv(name, v, 1);
    }
    return pclose(f) == 0 ? 0 : -1;
}

int dbt_cluster_start(struct dbt_cluster *c, const char *dir, bool export_env)
{
    memset(c, 0, sizeof *c);
    c->port = ts_free_port();
    snprintf(c->pgsh, sizeof c->pgsh, "%s/db/pg.sh", dbt_src());
    snprintf(c->env, sizeof c->env, "ATLAS_PGDATA='%s/pg' ATLAS_PGPORT=%u", dir, c->port);
    if (dbt_cluster_ctl(c, "start") != 0)
        return -1;
    /* Where the cluster really lives, from pg.sh's own words. */
    if (cluster_env(c, "env", export_env, c->host, sizeof c->host) != 0 || !c->host[0])
        return -1;
    snprintf(c->conninfo, sizeof c->conninfo, "host=%s port=%u dbname=atlas", c->host, c->port);
    return 0;
}

int dbt_cluster_replica(struct dbt_cluster *c, bool export_env)
{
    size_t n = strlen(c->env);
    snprintf(c->env + n, sizeof c->env - n, " ATLAS_PGREPLICA_PORT=%u", ts_free_port());
    if (dbt_cluster_ctl(c, "replica") != 0)
        return -1;
    return cluster_env(c, "env --ha", export_env, c->ha_hosts, sizeof c->ha_hosts);
}
