/* Migrations and schema checks (blocking libpq: used by atlas-db and by daemons at start-up,
 * before their loop runs). Files NNNN_name.sql are applied in number order, each in its own
 * transaction with its row in schema_migrations, under an advisory lock; a file already applied
 * is recognised by its number and must not have changed (SHA-256 checksum). */
#include "db.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

#define MIGRATE_LOCK_KEY "4707928435" /* pg_advisory_lock key: arbitrary, fixed for Atlas */
#define MAX_MIGRATIONS   1000
#define MAX_FILE_BYTES   (4 * 1024 * 1024)

struct mfile {
    int version;
    char name[256];
};

static int cmp_mfile(const void *a, const void *b)
{
    return ((const struct mfile *)a)->version - ((const struct mfile *)b)->version;
}

static void set_err(struct db_error *err, int code, const char *sqlstate, const char *fmt,
                    const char *arg)
{
    char msg[1024]; /* db_error keeps the first 255 characters */
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    if (err)
        dbc_set_error(err, code, sqlstate, msg);
}

int db_pg_error(struct db_error *err, PGconn *conn, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s: %s", what, msg ? msg : PQerrorMessage(conn));
    int code = (PQstatus(conn) == CONNECTION_BAD || !state) ? DB_E_CONN : DB_E_SQL;
    if (err)
        dbc_set_error(err, code, state, buf);
    return err ? err->code : code;
}

int db_run(PGconn *conn, const char *sql, struct db_error *err, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = db_pg_error(err, conn, res, what);
    PQclear(res);
    return rc;
}

PGconn *db_connect_at(const char *conninfo, struct db_error *err)
{
    PGconn *c = PQconnectdb(conninfo ? conninfo : "");
    if (PQstatus(c) == CONNECTION_OK)
        return c;
    char msg[300];
    snprintf(msg, sizeof msg, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    if (err)
        dbc_set_error(err, DB_E_CONN, NULL, msg);
    PQfinish(c);
    return NULL;
}

int db_schema_check_at(const char *conninfo, int required, struct db_error *err)
{
    PGconn *c = db_connect_at(conninfo, err);
    if (!c)
        return DB_E_CONN;
    int rc = db_schema_check(c, required, err);
    PQfinish(c);
    return rc;
}

int db_migrate_at(const char *conninfo, const char *dir, int *applied,
                  void (*log)(const char *line), struct db_error *err)
{
    PGconn *c = db_connect_at(conninfo, err);
    if (!c)
        return DB_E_CONN;
    int rc = db_migrate(c, dir, applied, log, err);
    PQfinish(c);
    return rc;
}

int db_schema_check(PGconn *conn, int required, struct db_error *err)
{
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        set_err(err, DB_E_CONN, NULL, "not connected%s", NULL);
        return DB_E_CONN;
    }
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM public.schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool missing = state && strcmp(state, "42P01") == 0;
        int rc = missing ? DB_E_SCHEMA : db_pg_error(err, conn, res, "schema check");
        if (missing)
            set_err(err, DB_E_SCHEMA, state,
                    "no schema_migrations table: run `atlas-db migrate` first%s", NULL);
        PQclear(res);
        return rc;
    }
    int have = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (have < required) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "database schema is version %d, this program needs %d: run"
                 " `atlas-db migrate`",
                 have, required);
        if (err)
            dbc_set_error(err, DB_E_SCHEMA, NULL, msg);
        return DB_E_SCHEMA;
    }
    return 0;
}

/* Lists the migration files of dir, sorted. Returns the count or -1 (err filled). */
static int list_migrations(const char *dir, struct mfile *out, struct db_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        set_err(err, DB_E_INVALID, NULL, "cannot open migrations directory %s", dir);
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len < 4 || strcmp(nm + len - 4, ".sql") != 0)
            continue;
        bool ok = len > 9 && len < sizeof out[0].name && nm[4] == '_';
        for (int i = 0; ok && i < 4; i++)
            ok = nm[i] >= '0' && nm[i] <= '9';
        for (size_t i = 5; ok && i < len - 4; i++)
            ok = (nm[i] >= 'a' && nm[i] <= 'z') || (nm[i] >= '0' && nm[i] <= '9') || nm[i] == '_';
        if (!ok) {
            set_err(err, DB_E_INVALID, NULL, "migration file name %s is not NNNN_name.sql", nm);
            closedir(d);
            return -1;
        }
        if (n >= MAX_MIGRATIONS) {
            set_err(err, DB_E_INVALID, NULL, "too many migration files%s", NULL);
            closedir(d);
            return -1;
        }
        out[n].version = atoi(nm);
        snprintf(out[n].name, sizeof out[n].name, "%s", nm);
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, cmp_mfile);
    for (int i = 1; i < n; i++) {
        if (out[i].version == out[i - 1].version) {
            set_err(err, DB_E_INVALID, NULL, "two migrations share the number of %s", out[i].name);
            return -1;
        }
    }
    return n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || n > MAX_FILE_BYTES) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void sha256_hex(const char *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Applies one file unless already recorded (then verifies its checksum). 1 applied, 0 skipped,
 * or a negative error. */
static int apply_one(PGconn *conn, const char *dir, const struct mfile *m, struct db_error *err)
{
    char path[4096], vbuf[16], sum[65];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, m->name);
    char *sql = read_file(path, &len);
    if (!sql) {
        set_err(err, DB_E_INVALID, NULL, "cannot read migration %s", m->name);
        return DB_E_INVALID;
    }
    if (memchr(sql, '\0', len)) {
        free(sql);
        set_err(err, DB_E_INVALID, NULL, "migration %s contains a NUL byte", m->name);
        return DB_E_INVALID;
    }
    sha256_hex(sql, len, sum);
    snprintf(vbuf, sizeof vbuf, "%d", m->version);
    const char *p1[] = { vbuf };
    PGresult *res = PQexecParams(conn,
                                 "SELECT checksum FROM public.schema_migrations"
                                 " WHERE version = $1",
                                 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = db_pg_error(err, conn, res, "reading schema_migrations");
        PQclear(res);
        free(sql);
        return rc;
    }
    if (PQntuples(res) == 1) {
        bool same = strcmp(PQgetvalue(res, 0, 0), sum) == 0;
        PQclear(res);
        free(sql);
        if (!same) {
            set_err(err, DB_E_INVALID, NULL,
                    "migration %s was changed after it was applied (write a new migration)",
                    m->name);
            return DB_E_INVALID;
        }
        return 0;
    }
    PQclear(res);
    int rc = db_run(conn, "BEGIN", err, m->name);
    if (rc == 0)
        rc = db_run(conn, sql, err, m->name);
    free(sql);
    if (rc == 0) {
        const char *p3[] = { vbuf, m->name, sum };
        res = PQexecParams(conn,
                           "INSERT INTO public.schema_migrations (version, name, checksum)"
                           " VALUES ($1, $2, $3)",
                           3, NULL, p3, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = db_pg_error(err, conn, res, m->name);
        PQclear(res);
    }
    if (rc == 0)
        rc = db_run(conn, "COMMIT", err, m->name);
    if (rc != 0) {
        PQclear(PQexec(conn, "ROLLBACK"));
        return rc;
    }
    return 1;
}

int db_migrate(PGconn *conn, const char *dir, int *applied, void (*log)(const char *line),
               struct db_error *err)
{
    if (applied)
        *applied = 0;
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        set_err(err, DB_E_CONN, NULL, "not connected%s", NULL);
        return DB_E_CONN;
    }
    if (!dir) {
        set_err(err, DB_E_INVALID, NULL, "no migrations directory%s", NULL);
        return DB_E_INVALID;
    }
    struct mfile *files = calloc(MAX_MIGRATIONS, sizeof *files);
    if (!files) {
        set_err(err, DB_E_SYS, NULL, "out of memory%s", NULL);
        return DB_E_SYS;
    }
    int n = list_migrations(dir, files, err);
    if (n < 0) {
        free(files);
        return DB_E_INVALID;
    }
    int rc = db_run(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, "advisory lock");
    if (rc != 0) {
        free(files);
        return rc;
    }
    rc = db_run(conn,
                "SET client_min_messages = warning;"
                "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                err, "creating schema_migrations");
    for (int i = 0; rc == 0 && i < n; i++) {
        int r = apply_one(conn, dir, &files[i], err);
        if (r < 0) {
            rc = r;
        } else if (r == 1) {
            if (applied)
                (*applied)++;
            if (log) {
                char line[400];
                snprintf(line, sizeof line, "applied %s", files[i].name);
                log(line);
            }
        }
    }
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    free(files);
    return rc;
}
