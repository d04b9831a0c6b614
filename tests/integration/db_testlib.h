/* Helpers for the db integration tests: a fresh database per test (created on the cluster named
 * by PG*, migrated, dropped afterwards), a blocking side connection to check what is committed,
 * and running the loop until a condition holds (bounded: a hang fails the test). */
#ifndef ATLAS_DB_TESTLIB_H
#define ATLAS_DB_TESTLIB_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"

/* Whether the PG* environment names a cluster (PGHOST or PGDATABASE set); when it does not,
 * says so on stderr for test and how to set it. */
bool dbt_env_names_cluster(const char *test);
/* Creates database atlas_t_<tag>_<pid> (its sessions count their planning in
 * pg_stat_statements) and migrates it. Returns its conninfo ("dbname=...")
 * in a static buffer (copy it), or NULL. */
const char *dbt_create(const char *tag);
/* How many times the sessions of c's database planned (*plans) and executed (*calls) the
 * statements whose text starts with prefix, from pg_stat_statements (which the cluster preloads:
 * db/pg.sh; dbt_create's databases count planning). 0, or -1 with the error printed. */
int dbt_plans(PGconn *c, const char *prefix, long long *plans, long long *calls);
/* Drops the database created by dbt_create (terminating its sessions). */
void dbt_drop(const char *conninfo);
/* A blocking connection (for checks from the test itself). */
PGconn *dbt_connect(const char *conninfo);
/* SELECT that returns one integer (e.g. count(*)). -1 on error. */
long long dbt_scalar(PGconn *c, const char *sql);
/* Runs sql (one or more statements, the last of which may return rows). 0, or -1 with the
 * error printed. */
int dbt_exec(PGconn *c, const char *sql);
/* Runs base until *flag becomes true or timeout_ms passes. Returns 0 or -1 on timeout. */
int dbt_run_until(struct event_base *base, bool (*cond)(void *), void *arg, int timeout_ms);
/* Fills rec with a valid record numbered i (unique identity per (run, i)). */
void dbt_record(struct db_auth_record *rec, unsigned run, unsigned i);
/* Path of the source tree (ATLAS_SRC or "."). */
const char *dbt_src(void);
/* Today's date in UTC ("YYYY-MM-DD", the day PostgreSQL's (now() AT TIME ZONE 'UTC')::date
 * gives: a request's day, a wallet's usage day) and, unless month is NULL, the first day of its
 * month, for rows a test writes as of today — a fixed date makes a test that fails from the next
 * day on. */
void dbt_utc_today(char day[11], char *month);

/* A PostgreSQL cluster of a test's own (db/pg.sh), for tests that stop and start the server. */
struct dbt_cluster {
    char env[1400];     /* ATLAS_PGDATA='...' ATLAS_PGPORT=... for db/pg.sh */
    char pgsh[1100];    /* db/pg.sh */
    char host[700];     /* its socket directory (pg.sh may put the cluster under /tmp) */
    char conninfo[900]; /* its database */
    uint16_t port;
    char ha_hosts[1400]; /* after dbt_cluster_replica: "primary,replica" socket directories */
};
/* Starts a cluster in dir/pg on a free port. With export_env, the PG* environment names it
 * afterwards (the programs the test starts inherit it). 0 or -1. */
int dbt_cluster_start(struct dbt_cluster *c, const char *dir, bool export_env);
/* Adds a streaming replica (db/pg.sh replica: synchronous, a port of its own) to the cluster.
 * With export_env, the PG* environment names both servers afterwards (PGHOST and PGPORT lists,
 * PGTARGETSESSIONATTRS=read-write: libpq connects to whichever accepts writes). 0 or -1. */
int dbt_cluster_replica(struct dbt_cluster *c, bool export_env);
/* db/pg.sh verb ("start", "stop") on the cluster. 0 or -1. */
int dbt_cluster_ctl(const struct dbt_cluster *c, const char *verb);

#endif
