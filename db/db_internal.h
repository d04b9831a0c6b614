/* Private to libatlas_db: the pipelined connection engine (conn.c) shared by the generic client
 * (client.c) and the journal writer (journal.c), and the spool file format (spool.c). */
#ifndef ATLAS_DB_INTERNAL_H
#define ATLAS_DB_INTERNAL_H

#include "db.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <sys/queue.h>

struct event;

/* ---- the generic client's statements (client.c) -------------------------------------------
 * The typed APIs of db.h and wallet.h are built on these; tests use them to set up and inspect.
 */

/* Registers a prepared statement, (re)prepared on every connection when it connects, before any
 * work. name and sql are copied. Call before the loop runs. 0 or DB_E_INVALID/DB_E_SYS. */
__attribute__((warn_unused_result)) int db_client_prepare(struct db_client *c, const char *name,
                                                          const char *sql);

/* One statement of a job: either sql (sent with PQsendQueryParams, unnamed) or the name of a
 * statement registered with db_client_prepare. Parameters are text; a NULL value is SQL NULL. */
struct db_stmt {
    const char *sql;
    const char *prepared;
    int nparams;
    const char *const *values;
};

/* What a job's callback receives. res[i] is the result of statement i (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK), or NULL for a statement that failed or was skipped after an earlier error.
 * The results are freed when the callback returns. err->code is 0 on success. */
struct db_reply {
    const struct db_error *err;
    unsigned n;
    PGresult *const *res;
};
typedef void (*db_reply_cb)(void *arg, const struct db_reply *reply);

/* Queues n statements (1..32) as one job: they are sent pipelined, followed by one Sync, so they
 * run as ONE transaction — the implicit transaction of the pipeline segment: all committed or
 * none (an error rolls back everything before it and skips everything after it). cb fires once,
 * after the Sync's answer, i.e. after the commit. The statements and parameter values are copied
 * (one allocation per job). A job that fails with DB_ACTION_RETRY is run again (up to 3 times);
 * a job whose connection breaks before it was sent waits for the next connection; one whose
 * connection breaks after it was sent fails with DB_E_CONN (its outcome is unknown: make such
 * work idempotent); while no connection can be established, jobs fail at once with DB_E_CONN
 * rather than wait. Do not put BEGIN/COMMIT in the statements. cb runs on the loop; it may call
 * db_exec again. Returns 0, DB_E_INVALID, DB_E_FULL (too many queued) or DB_E_SYS; cb is not
 * called then. */
__attribute__((warn_unused_result)) int db_exec(struct db_client *c, const struct db_stmt *stmts,
                                                unsigned n, db_reply_cb cb, void *arg);

/* db_exec of one statement given as sql. */
__attribute__((warn_unused_result)) int db_query(struct db_client *c, const char *sql, int nparams,
                                                 const char *const *values, db_reply_cb cb,
                                                 void *arg);

/* ---- blocking schema work (migrate.c), for atlas-db, daemon start-up and tests ---------- */

/* Verifies that the database has schema version >= required (schema_migrations). Returns 0, or
 * DB_E_SCHEMA with the versions in err (also when schema_migrations does not exist), DB_E_CONN. */
__attribute__((warn_unused_result)) int db_schema_check(PGconn *conn, int required,
                                                        struct db_error *err);

/* Applies the numbered migrations NNNN_name.sql of dir that are not yet recorded, in order, each
 * in its own transaction, under a session advisory lock (concurrent runs wait, then do
 * nothing). Writes one line per applied file to log (may be NULL). *applied receives how many
 * were applied (may be NULL). Returns 0, DB_E_INVALID (bad dir or file name, checksum of an
 * applied file changed), DB_E_SQL or DB_E_CONN with err filled. */
__attribute__((warn_unused_result)) int db_migrate(PGconn *conn, const char *dir, int *applied,
                                                   void (*log)(const char *line),
                                                   struct db_error *err);

/* The blocking helpers of migrate.c, for the other blocking work of db/ (fx.c): a connection
 * to conninfo ("" or NULL = PG* environment), NULL with err filled; a statement without
 * parameters, 0 or an error; err (may be NULL) from a failed result, or from the connection
 * when res is NULL: DB_E_CONN when the connection broke or the server gave no SQLSTATE, else
 * DB_E_SQL. */
PGconn *db_connect_at(const char *conninfo, struct db_error *err);
int db_run(PGconn *conn, const char *sql, struct db_error *err, const char *what);
int db_pg_error(struct db_error *err, PGconn *conn, const PGresult *res, const char *what);

/* ---- connection engine ---------------------------------------------------------------- */

/* A job is a unit of work ending with one Sync: its statements are one transaction. The owner
 * embeds it in its own struct, sets nstmt, res (nstmt slots), send and done. */
struct dbc_job {
    TAILQ_ENTRY(dbc_job) link;
    unsigned nstmt;
    unsigned idx;   /* statement whose results are arriving */
    bool need_null; /* a result of statement idx arrived; its terminating NULL is next */
    bool sent;
    PGresult **res; /* nstmt slots, filled as results arrive (owned by the job) */
    struct db_error err;
    /* Sends the statements (PQsendQueryParams/Prepared), without the Sync. 0 or -1. */
    int (*send)(struct dbc_job *job, PGconn *pg);
    /* The Sync's answer arrived (err.code 0 = committed) or the job failed (err filled). The
     * engine has dequeued the job; the owner frees or reuses it. */
    void (*done)(struct dbc_job *job);
};
TAILQ_HEAD(dbc_jobq, dbc_job);

enum dbc_state {
    DBC_IDLE,       /* not connected, reconnect timer may be armed */
    DBC_CONNECTING, /* PQconnectPoll in progress */
    DBC_PREPARING,  /* connected; prepared statements in flight */
    DBC_READY,      /* usable */
    DBC_state_max
};

struct dbc_prep {
    const char *name;
    const char *sql;
};

struct dbc {
    struct event_base *base;
    const char *conninfo;         /* owner's copy */
    const char *app_name;         /* fallback_application_name (a static string) or NULL */
    const char *options;          /* libpq "options" (server settings, a static string) or NULL:
                                     given before the conninfo, whose own options win */
    const struct dbc_prep *preps; /* owner's array, prepared at each connect */
    unsigned npreps;
    unsigned nprep_pending;
    PGconn *pg;
    struct event *io;
    int io_fd;
    short io_what;
    struct event *timer;
    enum dbc_state state;
    uint32_t backoff_ms, backoff_min_ms, backoff_max_ms;
    unsigned id;
    struct dbc_jobq to_send; /* waiting to be written */
    struct dbc_jobq sent;    /* written, awaiting results */
    unsigned nsent;
    /* State change: became READY (up=true) or lost the connection (up=false). Jobs that were
     * sent are failed (DB_E_CONN) before; jobs not yet sent stay queued. */
    void (*on_state)(struct dbc *c, bool up);
    void *owner;
    char last_error[160];
};

__attribute__((warn_unused_result)) int dbc_init(struct dbc *c, struct event_base *base,
                                                 const char *conninfo, unsigned id);
void dbc_start(struct dbc *c);
/* Queues a job and sends it as soon as the connection allows. */
void dbc_submit(struct dbc *c, struct dbc_job *job);
/* Closes the connection; every queued job is failed with code (DB_E_CLOSED). */
void dbc_close(struct dbc *c, int code);
void dbc_fail_queued(struct dbc *c, int code);
/* Declares the connection broken (as if the socket had dropped): sent jobs fail with DB_E_CONN,
 * a reconnect is scheduled. For work that takes too long (a hung server). */
void dbc_abort(struct dbc *c, const char *why);
/* Removes the not-yet-sent jobs into q (to move them to another connection). */
void dbc_take_unsent(struct dbc *c, struct dbc_jobq *q);
void dbc_set_error(struct db_error *err, int code, const char *sqlstate, const char *msg);

/* ---- reading results (result.c) ------------------------------------------------------- */

/* Text column into out ("" for NULL); false when it does not fit. */
bool db_col_text(const PGresult *r, int row, int col, char *out, size_t cap);
/* Signed integer column; false when NULL or not an integer. */
bool db_col_i64(const PGresult *r, int row, int col, int64_t *out);
bool db_col_int(const PGresult *r, int row, int col, int *out);
/* Non-negative integer column up to max; -1 when NULL or not such an integer. */
int64_t db_col_num(const PGresult *r, int row, int col, uint64_t max);
/* Boolean column: true only for 't'. */
bool db_col_bool(const PGresult *r, int row, int col);
/* A conversion in three columns from col (billing_amount_minor, conversion_rate,
 * billing_currency): "none" when the amount is NULL or any of the three is malformed. */
void db_col_billing(const PGresult *r, int row, int col, struct db_billing *b);
/* bytea column ("\x…") into out; its length, or -1 when NULL, malformed or larger than cap. */
int db_col_bytea(const PGresult *r, int row, int col, uint8_t *out, size_t cap);

/* ---- spool ------------------------------------------------------------------------------ */

#define SPOOL_MAGIC      "ATLSPL1\n"
#define SPOOL_MAGIC_LEN  8
#define SPOOL_FRAME_HDR  8    /* u32 length LE, u32 CRC-32C LE of the payload */
#define SPOOL_MAX_RECORD 1024 /* payload bound */

uint32_t spool_crc32c(const void *data, size_t n);

/* Serializes rec as a spool payload into buf (cap >= SPOOL_MAX_RECORD). Returns its length. */
size_t spool_encode(const struct db_auth_record *rec, uint8_t *buf, size_t cap);
/* Parses a payload. 0 or -1 (malformed). */
__attribute__((warn_unused_result)) int spool_decode(const uint8_t *buf, size_t n,
                                                     struct db_auth_record *rec);
/* Appends a framed record (header + payload) to out (cap >= SPOOL_FRAME_HDR + SPOOL_MAX_RECORD).
 * Returns the frame length. */
size_t spool_frame(const struct db_auth_record *rec, uint8_t *out, size_t cap);

enum spool_read_status {
    SPOOL_READ_OK = 0,   /* *rec filled */
    SPOOL_READ_END = 1,  /* clean end of file */
    SPOOL_READ_TORN = 2, /* incomplete last frame (a write cut by a crash; never acknowledged) */
    SPOOL_READ_CORRUPT = -1, /* CRC mismatch or impossible length/payload */
};

/* Sequential reader over an open spool file. */
struct spool_reader {
    FILE *f;
    uint64_t offset; /* of the next frame */
};
/* Opens path and checks the magic. 0, 1 if the file does not exist, -1 on error/bad magic. */
__attribute__((warn_unused_result)) int spool_reader_open(struct spool_reader *r, const char *path);
enum spool_read_status spool_reader_next(struct spool_reader *r, struct db_auth_record *rec);
void spool_reader_close(struct spool_reader *r);

/* The live spool's writer. Records appended on the loop thread are written and fdatasync'd in
 * groups by an I/O thread; each group's tags are then reported to on_synced, err 0 when durable
 * (else an errno: nothing of the group may be taken as durable). */
struct spool_writer_opts {
    struct event_base *base;
    const char *path;     /* the live file */
    uint32_t sync_us;     /* a first record waits this long for company */
    unsigned max_records; /* bound on the records appended and not yet reported */
    void (*on_synced)(void *arg, const uint32_t *tags, unsigned n, int err);
    void *arg;
};
struct spool_writer;
/* Opens (creating, with its magic, synced) the live file and starts the I/O thread. 0,
 * DB_E_SPOOL (the file cannot be written: nothing may be promised) or DB_E_SYS. */
__attribute__((warn_unused_result)) int spool_writer_open(const struct spool_writer_opts *o,
                                                          struct spool_writer **out);
/* Appends rec to the next group; now: sync without waiting sync_us (draining). -1 when out of
 * memory (the record is not taken). */
__attribute__((warn_unused_result)) int spool_writer_append(struct spool_writer *w,
                                                            const struct db_auth_record *rec,
                                                            uint32_t tag, bool now);
/* Starts a sync of what was appended, unless one is running. */
void spool_writer_kick(struct spool_writer *w);
/* Records appended or being synced. */
bool spool_writer_busy(const struct spool_writer *w);
/* The live file holds synced records (from this process or an earlier one). */
bool spool_writer_has_data(const struct spool_writer *w);
/* Renames the live file to `to` for replay, between two groups; the next group starts a fresh
 * file. 0, 1 when there is nothing to hand over or a group is being written, -1 on failure. */
int spool_writer_handover(struct spool_writer *w, const char *to);
/* Stops the thread and syncs what is left on the calling thread (reported as usual). */
void spool_writer_close(struct spool_writer *w);

/* The replay file, read in chunks; records PostgreSQL refuses go to rejected_path. */
struct spool_replay {
    const char *path, *rejected_path; /* the owner's strings */
    struct spool_reader rd;
    bool eof;
    bool corrupt;   /* a bad frame: the file is kept, not removed */
    uint64_t total; /* records replayed from this file (the owner counts) */
};
/* 0 reading, 1 no file, -1 unreadable (corrupt is set: finish keeps it). */
int spool_replay_open(struct spool_replay *r);
/* Reads up to cap records; fewer (0) at the end of the file. */
unsigned spool_replay_fill(struct spool_replay *r, struct db_auth_record *recs, unsigned cap);
/* Closes and removes the file, or keeps it as <path>.corrupt.<time>. */
void spool_replay_finish(struct spool_replay *r);
/* Appends refused records to rejected_path (fsync'd); false when that fails (the whole replay
 * file is then kept). */
bool spool_replay_reject(struct spool_replay *r, const struct db_auth_record *recs, unsigned n);

/* A one-dimensional PostgreSQL array in binary form (what array_recv reads), for the journal
 * writer's unnest() parameters (db/barray.c): each element is a length and the type's binary
 * value, so the server parses no text (issue 17: array_in, the type input functions, hex
 * decoding and timestamp parsing were ~10 % of the backends' CPU per journal row). */
enum {
    DB_OID_BYTEA = 17,
    DB_OID_INT8 = 20,
    DB_OID_INT2 = 21,
    DB_OID_INT4 = 23,
    DB_OID_TEXT = 25,
    DB_OID_BPCHAR = 1042,
    DB_OID_DATE = 1082,
    DB_OID_TIMESTAMPTZ = 1184,
};
struct db_barray {
    char *p;
    size_t n, cap;
    uint32_t count;
    bool hasnull, failed;
};
/* Empties a (keeps its buffer). 0, or -1 out of memory (then every call fails until reset). */
int db_barray_reset(struct db_barray *a);
int db_barray_null(struct db_barray *a);
int db_barray_bytes(struct db_barray *a, const void *p, size_t len);
int db_barray_text(struct db_barray *a, const char *s);
int db_barray_opt(struct db_barray *a, const char *s);    /* NULL when s is "" */
int db_barray_i16(struct db_barray *a, int64_t v);        /* int2, NULL when v < 0 */
int db_barray_i32(struct db_barray *a, int64_t v);        /* int4, NULL when v < 0 */
int db_barray_i64(struct db_barray *a, int64_t v);        /* int8, NULL when v < 0 */
int db_barray_date(struct db_barray *a, const char *ymd); /* "YYYY-MM-DD" (validated before) */
int db_barray_ts(struct db_barray *a, uint64_t unix_us);  /* timestamptz */
/* Writes the header (elements of type elem_oid): a->p, a->n are then the parameter. */
int db_barray_close(struct db_barray *a, uint32_t elem_oid);
void db_barray_free(struct db_barray *a);

#endif
