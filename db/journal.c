/* The journal writer: every record switchd must not lose — journal rows (ANSWER), write-ahead rows
 * of requests about to be forwarded (INTENT), reversals it owes issuers (REVERSAL) — queues in
 * preallocated slots and is flushed in batches: one transaction per batch, holding one pipelined
 * multi-row statement per kind (several connections in flight), acknowledged only after the
 * commit. While PostgreSQL is unreachable the records go to an fsync'd spool instead, replayed in
 * order when it returns; every statement is idempotent under replay (unique keys). */
#include "db_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "parse.h"

#define REPLAY_CHUNK 1000 /* records per replay batch (at least batch_max) */

static const char *const outcome_names[DB_OUTCOME_max] = {
    "approved", "declined", "rejected", "timeout", "unavailable", "error",
};

/* The statements of a batch, one per group of records, sent in this order in its transaction:
 * an INTENT is in switch.inflight before an ANSWER or REVERSAL of the same batch settles it. The
 * SETTLE group holds no records of its own: it deletes the inflight rows of the ANSWER and
 * REVERSAL records that settle one. */
enum jgroup_id { G_INTENT, G_ANSWER, G_REVERSAL, G_ADVICE, G_SETTLE, G_max };

#define INTENT_COLS   20
#define ANSWER_COLS   29
#define REVERSAL_COLS 21
#define ADVICE_COLS   23
#define SETTLE_COLS   6
#define MAX_COLS      ANSWER_COLS

static const unsigned group_cols[G_max] = { INTENT_COLS, ANSWER_COLS, REVERSAL_COLS, ADVICE_COLS,
                                            SETTLE_COLS };

/* The element type of each column's array, as the statements below cast it ($n::type[]): the
 * parameters are sent in binary (db/barray.c), so the server parses no text. */
#define T_DATE DB_OID_DATE
#define T_TEXT DB_OID_TEXT
#define T_BPC  DB_OID_BPCHAR
#define T_I2   DB_OID_INT2
#define T_I4   DB_OID_INT4
#define T_I8   DB_OID_INT8
#define T_TS   DB_OID_TIMESTAMPTZ
#define T_BYTE DB_OID_BYTEA
#define ISSUER_SIDE_TYPES                                                                          \
    T_DATE, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_I8,  \
        T_I2
static const uint32_t group_types[G_max][MAX_COLS] = {
    [G_INTENT] = { T_DATE, T_TEXT, T_TEXT, T_BPC,  T_BPC,  T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT,
                   T_TEXT, T_I8,   T_I2,   T_TEXT, T_BYTE, T_BYTE, T_TS,   T_I8,   T_TEXT, T_I2 },
    [G_ANSWER] = { T_DATE, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT,
                   T_I8,   T_I2,   T_TEXT, T_TEXT, T_TEXT, T_BYTE, T_TEXT, T_TEXT, T_TEXT, T_TS,
                   T_I4,   T_I4,   T_I4,   T_I4,   T_TEXT, T_I8,   T_TEXT, T_I2,   T_TEXT },
    [G_REVERSAL] = { ISSUER_SIDE_TYPES, T_TEXT, T_TEXT, T_BYTE, T_BYTE, T_TEXT, T_I8, T_TEXT,
                     T_I2 },
    [G_ADVICE] = { ISSUER_SIDE_TYPES, T_TEXT, T_TEXT, T_BYTE, T_BYTE, T_TEXT, T_I8, T_TEXT, T_I2,
                   T_TEXT, T_TS },
    [G_SETTLE] = { T_DATE, T_TEXT, T_TEXT, T_BPC, T_BPC, T_TEXT },
};

#define JSTMT_INTENT   "atlas_inflight_insert"
#define JSTMT_ANSWER   "atlas_journal_insert"
#define JSTMT_UPSERT   "atlas_journal_upsert"
#define JSTMT_REVERSAL "atlas_reversal_insert"
#define JSTMT_SETTLE   "atlas_inflight_settle"
#define JSTMT_ADVICE   "atlas_advice_insert"

/* A request's identity (the first six unnest() columns: date, acquirer, terminal, STAN, DE 7,
 * MTI) against a table's key, compared in the C collation and as bpchar where the key is
 * char(n), so that the primary-key index serves the lookup. */
#define KEY_MATCH(t)                                                                               \
    t ".request_date = u.c1 AND " t ".acquirer_id = u.c2 COLLATE \"C\" AND " t                     \
      ".terminal_id = u.c3 COLLATE \"C\" AND " t ".stan = u.c4 COLLATE \"C\" AND " t               \
      ".transmission_time = u.c5 COLLATE \"C\" AND " t                                             \
      ".mti_class = substr(u.c6, 1, 3)::bpchar COLLATE \"C\""
#define KEY_RETURNING                                                                              \
    " RETURNING request_date::text, acquirer_id, terminal_id, stan, transmission_time, mti_class"

/* Every statement here takes its rows as arrays, and PostgreSQL judges a custom plan of
 * unnest($n) cheaper than the generic one: left to itself it plans the statement again on every
 * execution — the write-ahead's with its two per-row sub-selects over every journal partition
 * (measured at 2,000 authorizations/s: 760 us of planning against 115 us of execution per batch,
 * a third of PostgreSQL's CPU). One plan per session instead; the plans are per-row key probes
 * that need no parameter's value (test_db_journal test_planned_once_per_session). And no
 * sequential scans: switch.inflight holds a few rows on many pages (every request inserts its
 * row, its answer deletes it, autovacuum tidies later), which the planner took for a table to
 * read whole when settling a batch — ~900 pages per batch at 2,000/s, 580 us instead of 25
 * (test_settle_probes_inflight_by_key). Every statement of the writer has an index path. */
#define JOURNAL_SERVER_OPTIONS "-c enable_seqscan=off -c plan_cache_mode=force_generic_plan"

/* Write-ahead: refused (nothing returned for it) when the identity is in flight already, the
 * journal holds a request of this identity that reached an issuer, or a transfer holds it (a
 * transfer's own request never reaches an issuer: its legs do, under identities of their own).
 * The two NOT EXISTS carry OFFSET 0 so that PostgreSQL keeps them as per-row subplans — a
 * primary-key probe into the one day partition the row's date names (run-time pruning) —
 * instead of pulling them up into a hash anti-join: planned on an empty journal (and a
 * session keeps its plan), that read every partition in full on every batch
 * (test_db_journal test_write_ahead_probes_the_journal_by_key). */
#define INTENT_SQL                                                                                 \
    "INSERT INTO switch.inflight (request_date, acquirer_id, terminal_id, stan, "                  \
    "transmission_time,"                                                                           \
    " mti_class, mti, owner, issuer_id, issuer_stan, issuer_transmission_time, rrn,"               \
    " processing_code, amount_minor, currency, pan_masked, pan_hmac, pan_sealed, created_at,"      \
    " billing_amount_minor, conversion_rate, billing_currency)"                                    \
    " SELECT u.c1, u.c2, u.c3, u.c4, u.c5, substr(u.c6, 1, 3), u.c6, $21, u.c7, u.c8, u.c9,"       \
    " u.c10, u.c11, u.c12, u.c13, u.c14, u.c15, u.c16, u.c17,"                                     \
    " u.c18, u.c19, u.c20"                                                                         \
    " FROM (SELECT unnest($1::date[]) AS c1, unnest($2::text[]) AS c2,"                            \
    " unnest($3::text[]) AS c3, unnest($4::bpchar[]) AS c4, unnest($5::bpchar[]) AS c5,"           \
    " unnest($6::text[]) AS c6, unnest($7::text[]) AS c7, unnest($8::text[]) AS c8,"               \
    " unnest($9::text[]) AS c9, unnest($10::text[]) AS c10, unnest($11::text[]) AS c11,"           \
    " unnest($12::bigint[]) AS c12, unnest($13::smallint[]) AS c13,"                               \
    " unnest($14::text[]) AS c14, unnest($15::bytea[]) AS c15,"                                    \
    " unnest($16::bytea[]) AS c16, unnest($17::timestamptz[]) AS c17,"                             \
    " unnest($18::bigint[]) AS c18, unnest($19::text[]) AS c19,"                                   \
    " unnest($20::smallint[]) AS c20) AS u"                                                        \
    " WHERE NOT EXISTS (SELECT 1 FROM switch.authorizations a WHERE " KEY_MATCH(                   \
        "a") " AND a.issuer_stan IS NOT NULL OFFSET 0)"                                            \
             " AND NOT EXISTS (SELECT 1 FROM switch.transfers x WHERE x.request_date = u.c1"       \
             " AND x.acquirer_id = u.c2 COLLATE \"C\" AND x.terminal_id = u.c3 COLLATE \"C\""      \
             " AND x.stan = u.c4 COLLATE \"C\" AND x.transmission_time = u.c5 COLLATE \"C\""       \
             " AND substr(u.c6, 1, 3) = '020' OFFSET 0)"                                           \
             " ON CONFLICT DO NOTHING" KEY_RETURNING

/* The 28 columns in parameter order; unnest() turns the arrays back into rows. Two forms: the
 * plain INSERT for live batches, and an upsert for replays and for a live batch that hit an
 * existing key (23505). A plain INSERT costs the server about half as much per row as ON
 * CONFLICT's speculative insertion (measured: 60 000 rows, 1.3 s against 2.4 s), and live records
 * almost never collide, so optimism pays. The upsert replaces only the row of a request the
 * switch answered itself (no issuer STAN: nothing moved) with a newer one — but never an
 * approval it gave (a terminal reversal acknowledged 00) with anything but an approval: the
 * terminal holds it — and returns the keys it wrote: an ANSWER not returned met the row of a
 * request that reached an issuer, or such an approval (DB_CONFLICT). */
#define ANSWER_COLUMNS                                                                             \
    "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"             \
    " transmission_time, mti, rrn, issuer_id, issuer_stan, processing_code, amount_minor,"         \
    " currency, response_code, auth_code, pan_masked, pan_hmac, outcome, original_stan,"           \
    " original_transmission_time, created_at, lat_total_us, lat_mac_us, lat_pin_us,"               \
    " lat_issuer_us, issuer_transmission_time, billing_amount_minor, conversion_rate,"             \
    " billing_currency, stand_in)"                                                                 \
    " SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,"                    \
    " c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28,"                            \
    " coalesce(c29 = 'stand_in', false)"
/* The arrays become rows through set-returning functions in a select list (ProjectSet, which
 * streams its rows) rather than unnest(a, b, …) in FROM (a function scan that first copies every
 * row into a tuplestore: ~6 % of the backends' CPU per row, issue 17). The arrays of a statement
 * always have the same length, so both forms give the same rows. */
#define ANSWER_UNNEST                                                                              \
    " (SELECT unnest($1::date[]) AS c1, unnest($2::text[]) AS c2, unnest($3::text[]) AS c3,"       \
    " unnest($4::text[]) AS c4, unnest($5::text[]) AS c5, unnest($6::text[]) AS c6,"               \
    " unnest($7::text[]) AS c7, unnest($8::text[]) AS c8, unnest($9::text[]) AS c9,"               \
    " unnest($10::text[]) AS c10, unnest($11::bigint[]) AS c11,"                                   \
    " unnest($12::smallint[]) AS c12, unnest($13::text[]) AS c13,"                                 \
    " unnest($14::text[]) AS c14, unnest($15::text[]) AS c15, unnest($16::bytea[]) AS c16,"        \
    " unnest($17::text[]) AS c17, unnest($18::text[]) AS c18, unnest($19::text[]) AS c19,"         \
    " unnest($20::timestamptz[]) AS c20, unnest($21::integer[]) AS c21,"                           \
    " unnest($22::integer[]) AS c22, unnest($23::integer[]) AS c23,"                               \
    " unnest($24::integer[]) AS c24, unnest($25::text[]) AS c25,"                                  \
    " unnest($26::bigint[]) AS c26, unnest($27::text[]) AS c27,"                                   \
    " unnest($28::smallint[]) AS c28, unnest($29::text[]) AS c29) AS u"
#define ANSWER_SQL ANSWER_COLUMNS " FROM" ANSWER_UNNEST
/* An upsert may not touch one row twice: of the records of one identity in a batch (a refusal
 * and the request that replaces it, replayed together), the one that reached an issuer wins,
 * else an approval, else the newest. */
#define ANSWER_UPSERT_SQL                                                                          \
    ANSWER_COLUMNS                                                                                 \
    " FROM (SELECT DISTINCT ON (c1, c2, c3, c4, c5, substr(c6, 1, 3)) * FROM" ANSWER_UNNEST        \
    " ORDER BY c1, c2, c3, c4, c5, substr(c6, 1, 3),"                                              \
    " c9 IS NOT NULL DESC, c17 = 'approved' DESC, c20 DESC) AS d"                                  \
    " ON CONFLICT (request_date, acquirer_id, terminal_id, stan, transmission_time,"               \
    " mti_class) DO UPDATE SET mti = EXCLUDED.mti, rrn = EXCLUDED.rrn,"                            \
    " issuer_id = EXCLUDED.issuer_id, issuer_stan = EXCLUDED.issuer_stan,"                         \
    " processing_code = EXCLUDED.processing_code,"                                                 \
    " amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,"                         \
    " response_code = EXCLUDED.response_code, auth_code = EXCLUDED.auth_code,"                     \
    " pan_masked = EXCLUDED.pan_masked, pan_hmac = EXCLUDED.pan_hmac,"                             \
    " outcome = EXCLUDED.outcome, original_stan = EXCLUDED.original_stan,"                         \
    " original_transmission_time = EXCLUDED.original_transmission_time,"                           \
    " created_at = EXCLUDED.created_at, recorded_at = now(),"                                      \
    " lat_total_us = EXCLUDED.lat_total_us, lat_mac_us = EXCLUDED.lat_mac_us,"                     \
    " lat_pin_us = EXCLUDED.lat_pin_us, lat_issuer_us = EXCLUDED.lat_issuer_us,"                   \
    " issuer_transmission_time = EXCLUDED.issuer_transmission_time,"                               \
    " billing_amount_minor = EXCLUDED.billing_amount_minor,"                                       \
    " conversion_rate = EXCLUDED.conversion_rate, billing_currency = EXCLUDED.billing_currency,"   \
    " stand_in = EXCLUDED.stand_in"                                                                \
    " WHERE switch.authorizations.issuer_stan IS NULL"                                             \
    " AND (switch.authorizations.outcome <> 'approved' OR EXCLUDED.outcome = 'approved')"          \
    " AND switch.authorizations.created_at <= EXCLUDED.created_at" KEY_RETURNING                   \
    ", coalesce(issuer_stan, '')"

#define REVERSAL_SQL                                                                               \
    "INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,"             \
    " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,"              \
    " processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac, pan_sealed,"       \
    " reason, billing_amount_minor, conversion_rate, billing_currency, claimed_by)"                \
    " SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,"                    \
    " c16, c17, c18, c19, c20, c21, nullif($22, '')"                                               \
    " FROM (SELECT unnest($1::date[]) AS c1, unnest($2::text[]) AS c2,"                            \
    " unnest($3::text[]) AS c3, unnest($4::text[]) AS c4, unnest($5::text[]) AS c5,"               \
    " unnest($6::text[]) AS c6, unnest($7::text[]) AS c7, unnest($8::text[]) AS c8,"               \
    " unnest($9::text[]) AS c9, unnest($10::text[]) AS c10, unnest($11::text[]) AS c11,"           \
    " unnest($12::bigint[]) AS c12, unnest($13::smallint[]) AS c13,"                               \
    " unnest($14::text[]) AS c14, unnest($15::text[]) AS c15, unnest($16::bytea[]) AS c16,"        \
    " unnest($17::bytea[]) AS c17, unnest($18::text[]) AS c18,"                                    \
    " unnest($19::bigint[]) AS c19, unnest($20::text[]) AS c20,"                                   \
    " unnest($21::smallint[]) AS c21) AS u"                                                        \
    " ON CONFLICT DO NOTHING"

/* Stand-in advices and their reversals (switch/advice.c): the reversal columns, then the stand-in
 * DE 39 and switchd's time of the decision (the queue's order); the owner is the last parameter,
 * as for INTENT. */
#define ADVICE_SQL                                                                                 \
    "INSERT INTO switch.advice_queue (kind, request_date, acquirer_id, terminal_id, stan,"         \
    " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,"              \
    " processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac, pan_sealed,"       \
    " reason, billing_amount_minor, conversion_rate, billing_currency, stand_in_rc, queued_at,"    \
    " owner)"                                                                                      \
    " SELECT CASE WHEN c18 = 'stand_in' THEN 'advice' ELSE 'reversal' END, c1, c2, c3, c4, c5,"    \
    " c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18,"                                \
    " c19, c20, c21, c22, c23, $24"                                                                \
    " FROM (SELECT unnest($1::date[]) AS c1, unnest($2::text[]) AS c2,"                            \
    " unnest($3::text[]) AS c3, unnest($4::text[]) AS c4, unnest($5::text[]) AS c5,"               \
    " unnest($6::text[]) AS c6, unnest($7::text[]) AS c7, unnest($8::text[]) AS c8,"               \
    " unnest($9::text[]) AS c9, unnest($10::text[]) AS c10, unnest($11::text[]) AS c11,"           \
    " unnest($12::bigint[]) AS c12, unnest($13::smallint[]) AS c13,"                               \
    " unnest($14::text[]) AS c14, unnest($15::text[]) AS c15, unnest($16::bytea[]) AS c16,"        \
    " unnest($17::bytea[]) AS c17, unnest($18::text[]) AS c18,"                                    \
    " unnest($19::bigint[]) AS c19, unnest($20::text[]) AS c20,"                                   \
    " unnest($21::smallint[]) AS c21, unnest($22::text[]) AS c22,"                                 \
    " unnest($23::timestamptz[]) AS c23) AS u"                                                     \
    " ON CONFLICT DO NOTHING"

#define SETTLE_SQL                                                                                 \
    "DELETE FROM switch.inflight f USING (SELECT unnest($1::date[]) AS c1,"                        \
    " unnest($2::text[]) AS c2, unnest($3::text[]) AS c3, unnest($4::bpchar[]) AS c4,"             \
    " unnest($5::bpchar[]) AS c5, unnest($6::text[]) AS c6) AS u WHERE " KEY_MATCH("f")

static const struct dbc_prep journal_preps[] = {
    { JSTMT_INTENT, INTENT_SQL },        { JSTMT_ANSWER, ANSWER_SQL },
    { JSTMT_UPSERT, ANSWER_UPSERT_SQL }, { JSTMT_REVERSAL, REVERSAL_SQL },
    { JSTMT_SETTLE, SETTLE_SQL },        { JSTMT_ADVICE, ADVICE_SQL },
};

struct jslot {
    struct db_auth_record rec;
    db_journal_cb cb;
    void *arg;
    uint64_t enq_ns;
    uint8_t retries;
    bool solo; /* send alone: its batch was refused and this isolates the culprit */
};

struct jconn;

/* The records of one statement of a batch: their slot (or replay record) indices and the
 * statement's parameters, one PostgreSQL array per column. */
struct jgroup {
    unsigned n;
    uint32_t *rec; /* slot indices (live) or replay_recs indices (replay) */
    int *status;   /* live: each record's callback status */
    struct db_barray cols[MAX_COLS];
    const char *values[MAX_COLS + 1];
    int lengths[MAX_COLS + 1];
    int formats[MAX_COLS + 1]; /* binary arrays; the owner (last, INTENT/REVERSAL/ADVICE) text */
    int res;                   /* index of its result in the job, -1 when not sent */
};

struct jbatch {
    struct dbc_job job;
    struct jconn *jc;
    PGresult *res[G_max];
    bool replay; /* records are j->replay_recs (already acknowledged: no callbacks) */
    bool upsert; /* ANSWERs with the upsert */
    unsigned n;
    uint32_t *idx;       /* every slot of a live batch, in order (batch_max) */
    uint32_t *done_slot; /* a committed batch's slots and their statuses (batch_max) */
    int *done_status;
    struct jgroup g[G_max];
};

struct jconn {
    struct dbc dbc;
    struct db_journal *j;
    struct jbatch batch;
    bool busy;
    struct event *timeout; /* the batch in flight took too long: the server is hung */
};

struct jcb {
    db_journal_cb cb;
    void *arg;
    int status;
};

struct db_journal {
    struct event_base *base;
    struct db_journal_opts o;
    char *conninfo, *owner;
    char *spool_path, *replay_path, *rejected_path;
    struct jconn *conns;
    unsigned nconn;

    struct jslot *slots;
    uint32_t *free_idx; /* stack */
    unsigned nfree;
    uint32_t *wait; /* ring of slot indices waiting for a batch */
    unsigned wait_head, wait_n;
    struct jcb *cbq; /* callbacks being delivered (a stack: deliveries may nest) */
    unsigned cbq_n, cbq_cap;

    struct event *flush_timer;
    struct event *kick; /* submitted records go out at the end of this loop pass */
    struct event *drain_timer;
    bool down; /* no connection up and one has failed: spool */
    bool pressured;
    bool draining, closing;
    void (*drain_done)(void *);
    void *drain_arg;

    struct spool_writer *spool; /* tags are slot indices */
    bool replay_file;           /* <spool>.replay exists (left by a crash, or being replayed) */

    /* replay of <spool>.replay, one chunk of replay_recs in flight at a time */
    struct spool_replay rp;
    bool replaying;
    bool replay_inflight;
    struct db_auth_record *replay_recs;
    unsigned replay_n, replay_cap;

    /* db_journal_when_replayed */
    void (*replayed_cb)(void *arg);
    void *replayed_arg;
    struct event *replayed_ev;

    struct db_journal_stats st;
};

static void j_dispatch(struct db_journal *j, bool force);
static void j_maybe_replay(struct db_journal *j);
static void j_complete(struct db_journal *j, const uint32_t *slots, unsigned n, int status);
static void j_complete_each(struct db_journal *j, const uint32_t *slots, const int *status,
                            unsigned n);
static void j_check_drained(struct db_journal *j);
static void jc_arm_timeout(struct jconn *jc);

/* ---- record validation ------------------------------------------------------------------ */

void db_billing_none(struct db_billing *b)
{
    b->amount_minor = -1;
    b->rate[0] = '\0';
    b->currency = -1;
}

bool db_billing_converted(const struct db_billing *b)
{
    return b->amount_minor >= 0;
}

void db_auth_record_init(struct db_auth_record *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->amount_minor = -1;
    rec->currency = -1;
    db_billing_none(&rec->billing);
    rec->lat_total_us = rec->lat_mac_us = rec->lat_pin_us = rec->lat_issuer_us = -1;
}

static bool printable(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static bool valid_date(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (y < 2000 || y > 2199 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

#define CHECK(cond, field)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (err)                                                                               \
                dbc_set_error(err, DB_E_INVALID, NULL, "journal record: bad " field);              \
            return DB_E_INVALID;                                                                   \
        }                                                                                          \
    } while (0)

#define TERMINATED(f) (memchr(rec->f, '\0', sizeof rec->f) != NULL)

int db_auth_record_check(const struct db_auth_record *rec, struct db_error *err)
{
    CHECK(rec, "record");
    CHECK(TERMINATED(request_date) && valid_date(rec->request_date), "request_date");
    CHECK(TERMINATED(acquirer_id) && printable(rec->acquirer_id, 1, 11), "acquirer_id");
    CHECK(TERMINATED(terminal_id) && printable(rec->terminal_id, 8, 8), "terminal_id");
    CHECK(TERMINATED(stan) && at_is_digits(rec->stan, 6, 6), "stan");
    CHECK(TERMINATED(transmission_time) && at_is_digits(rec->transmission_time, 10, 10),
          "transmission_time");
    CHECK(TERMINATED(mti) && at_is_digits(rec->mti, 4, 4), "mti");
    CHECK(TERMINATED(rrn) && printable(rec->rrn, 0, 12), "rrn");
    CHECK(TERMINATED(issuer_id) && printable(rec->issuer_id, 0, 32), "issuer_id");
    CHECK(TERMINATED(issuer_stan) && (!rec->issuer_stan[0] || at_is_digits(rec->issuer_stan, 6, 6)),
          "issuer_stan");
    CHECK(TERMINATED(processing_code) &&
              (!rec->processing_code[0] || at_is_digits(rec->processing_code, 6, 6)),
          "processing_code");
    CHECK(rec->amount_minor >= -1, "amount_minor");
    CHECK(rec->currency >= -1 && rec->currency <= 999, "currency");
    CHECK(memchr(rec->billing.rate, '\0', sizeof rec->billing.rate) &&
              (db_billing_converted(&rec->billing)
                   ? rec->billing.amount_minor >= 0 && rec->billing.currency >= 1 &&
                         rec->billing.currency <= 999 && at_is_digits(rec->billing.rate, 8, 8) &&
                         rec->billing.rate[0] <= '7'
                   : rec->billing.amount_minor == -1 && rec->billing.currency == -1 &&
                         !rec->billing.rate[0]),
          "billing (DE 6/10/51: all three or none)");
    CHECK(TERMINATED(response_code) && printable(rec->response_code, 0, 2), "response_code");
    CHECK(TERMINATED(auth_code) && printable(rec->auth_code, 0, 6), "auth_code");
    CHECK(TERMINATED(pan_masked), "pan_masked");
    for (const char *p = rec->pan_masked; *p; p++)
        CHECK((*p >= '0' && *p <= '9') || *p == '*', "pan_masked");
    CHECK((unsigned)rec->outcome < DB_OUTCOME_max, "outcome");
    CHECK(TERMINATED(original_stan) &&
              (!rec->original_stan[0] || at_is_digits(rec->original_stan, 6, 6)),
          "original_stan");
    CHECK(TERMINATED(issuer_transmission_time) &&
              (!rec->issuer_transmission_time[0] ||
               at_is_digits(rec->issuer_transmission_time, 10, 10)),
          "issuer_transmission_time");
    CHECK(TERMINATED(original_transmission_time) &&
              (!rec->original_transmission_time[0] ||
               at_is_digits(rec->original_transmission_time, 10, 10)),
          "original_transmission_time");
    CHECK(rec->created_us > 0, "created_us");
    CHECK(rec->lat_total_us >= -1 && rec->lat_mac_us >= -1 && rec->lat_pin_us >= -1 &&
              rec->lat_issuer_us >= -1,
          "latency");
    CHECK((unsigned)rec->kind < DB_REC_max, "kind");
    if (rec->kind == DB_REC_ANSWER) {
        CHECK(TERMINATED(reason) && (!rec->reason[0] || strcmp(rec->reason, "stand_in") == 0),
              "reason");
        return 0;
    }
    /* What a reversal towards the issuer is rebuilt from. */
    CHECK(rec->issuer_id[0], "issuer_id");
    CHECK(rec->issuer_stan[0], "issuer_stan");
    CHECK(rec->issuer_transmission_time[0], "issuer_transmission_time");
    CHECK(rec->processing_code[0], "processing_code");
    CHECK(rec->amount_minor >= 0 && rec->currency >= 0, "amount");
    CHECK(rec->pan_masked[0] && rec->has_pan_hmac, "pan");
    CHECK(rec->pan_sealed_len > 0 && rec->pan_sealed_len <= DB_PAN_SEALED_MAX, "pan_sealed");
    CHECK(rec->kind == DB_REC_INTENT || (TERMINATED(reason) && printable(rec->reason, 1, 15)),
          "reason");
    /* An advice is rebuilt with its stand-in approval code, and the advice itself with the
     * decision's DE 39. */
    CHECK(rec->kind != DB_REC_ADVICE || (TERMINATED(auth_code) && printable(rec->auth_code, 1, 6)),
          "auth_code");
    CHECK(rec->kind != DB_REC_ADVICE || strcmp(rec->reason, "stand_in") != 0 ||
              at_is_digits(rec->response_code, 2, 2),
          "response_code");
    return 0;
}

/* ---- batch building ------------------------------------------------------------------------ */

/* The six identity columns every statement starts with. */
static int add_identity(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = db_barray_date(&c[0], r->request_date);
    rc |= db_barray_text(&c[1], r->acquirer_id);
    rc |= db_barray_text(&c[2], r->terminal_id);
    rc |= db_barray_text(&c[3], r->stan);
    rc |= db_barray_text(&c[4], r->transmission_time);
    rc |= db_barray_text(&c[5], r->mti);
    return rc;
}

/* DE 6/10/51 in three columns from first (NULL when not converted). */
static int add_billing(struct db_barray *c, unsigned first, const struct db_billing *b)
{
    int rc = db_barray_i64(&c[first], b->amount_minor);
    rc |= db_barray_opt(&c[first + 1], b->rate);
    rc |= db_barray_i16(&c[first + 2], b->currency);
    return rc;
}

static int add_answer(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = add_identity(c, r);
    rc |= db_barray_opt(&c[6], r->rrn);
    rc |= db_barray_opt(&c[7], r->issuer_id);
    rc |= db_barray_opt(&c[8], r->issuer_stan);
    rc |= db_barray_opt(&c[9], r->processing_code);
    rc |= db_barray_i64(&c[10], r->amount_minor);
    rc |= db_barray_i16(&c[11], r->currency);
    rc |= db_barray_opt(&c[12], r->response_code);
    rc |= db_barray_opt(&c[13], r->auth_code);
    rc |= db_barray_opt(&c[14], r->pan_masked);
    rc |= r->has_pan_hmac ? db_barray_bytes(&c[15], r->pan_hmac, 32) : db_barray_null(&c[15]);
    rc |= db_barray_text(&c[16], outcome_names[r->outcome]);
    rc |= db_barray_opt(&c[17], r->original_stan);
    rc |= db_barray_opt(&c[18], r->original_transmission_time);
    rc |= db_barray_ts(&c[19], r->created_us);
    rc |= db_barray_i32(&c[20], r->lat_total_us);
    rc |= db_barray_i32(&c[21], r->lat_mac_us);
    rc |= db_barray_i32(&c[22], r->lat_pin_us);
    rc |= db_barray_i32(&c[23], r->lat_issuer_us);
    rc |= db_barray_opt(&c[24], r->issuer_transmission_time);
    rc |= add_billing(c, 25, &r->billing);
    rc |= db_barray_opt(&c[28], r->reason); /* "stand_in": decided in the issuer's place */
    return rc;
}

/* INTENT and REVERSAL share their first thirteen columns: identity, issuer side, amounts. */
static int add_issuer_side(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = add_identity(c, r);
    rc |= db_barray_text(&c[6], r->issuer_id);
    rc |= db_barray_text(&c[7], r->issuer_stan);
    rc |= db_barray_text(&c[8], r->issuer_transmission_time);
    rc |= db_barray_opt(&c[9], r->rrn);
    rc |= db_barray_text(&c[10], r->processing_code);
    rc |= db_barray_i64(&c[11], r->amount_minor);
    rc |= db_barray_i16(&c[12], r->currency);
    return rc;
}

static int add_intent(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = add_issuer_side(c, r);
    rc |= db_barray_text(&c[13], r->pan_masked);
    rc |= db_barray_bytes(&c[14], r->pan_hmac, 32);
    rc |= db_barray_bytes(&c[15], r->pan_sealed, r->pan_sealed_len);
    rc |= db_barray_ts(&c[16], r->created_us);
    rc |= add_billing(c, 17, &r->billing);
    return rc;
}

static int add_reversal(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = add_issuer_side(c, r);
    rc |= db_barray_opt(&c[13], r->auth_code);
    rc |= db_barray_text(&c[14], r->pan_masked);
    rc |= db_barray_bytes(&c[15], r->pan_hmac, 32);
    rc |= db_barray_bytes(&c[16], r->pan_sealed, r->pan_sealed_len);
    rc |= db_barray_text(&c[17], r->reason);
    rc |= add_billing(c, 18, &r->billing);
    return rc;
}

static int add_advice(struct db_barray *c, const struct db_auth_record *r)
{
    int rc = add_reversal(c, r);
    rc |= db_barray_opt(&c[21], r->response_code);
    rc |= db_barray_ts(&c[22], r->created_us);
    return rc;
}

static void group_push(struct jgroup *g, uint32_t rec)
{
    g->rec[g->n++] = rec;
}

/* Adds record r (slot or replay index i) to the statement of its kind, and to SETTLE when it
 * settles its request's inflight row. */
static int batch_add(struct jbatch *b, uint32_t i, const struct db_auth_record *r)
{
    int rc;
    enum jgroup_id g = r->kind == DB_REC_INTENT     ? G_INTENT
                       : r->kind == DB_REC_REVERSAL ? G_REVERSAL
                       : r->kind == DB_REC_ADVICE   ? G_ADVICE
                                                    : G_ANSWER;
    switch (g) {
    case G_ADVICE:
        rc = add_advice(b->g[g].cols, r);
        break;
    case G_INTENT:
        rc = add_intent(b->g[g].cols, r);
        break;
    case G_REVERSAL:
        rc = add_reversal(b->g[g].cols, r);
        break;
    default:
        rc = add_answer(b->g[g].cols, r);
        break;
    }
    group_push(&b->g[g], i);
    if ((r->kind == DB_REC_ANSWER || r->kind == DB_REC_REVERSAL) && r->settle_inflight) {
        rc |= add_identity(b->g[G_SETTLE].cols, r);
        group_push(&b->g[G_SETTLE], i);
    }
    return rc ? -1 : 0;
}

/* Empties b's statements. 0, or -1 when out of memory. */
static int batch_reset(struct jbatch *b)
{
    int rc = 0;
    for (int g = 0; g < G_max; g++) {
        for (unsigned i = 0; i < group_cols[g]; i++)
            rc |= db_barray_reset(&b->g[g].cols[i]);
        b->g[g].n = 0;
        b->g[g].res = -1;
    }
    b->n = 0;
    b->replay = false;
    b->upsert = false;
    return rc ? -1 : 0;
}

static int batch_close(struct jbatch *b, const char *owner)
{
    unsigned nstmt = 0;
    for (int g = 0; g < G_max; g++) {
        struct jgroup *gr = &b->g[g];
        gr->res = gr->n ? (int)nstmt++ : -1;
        for (unsigned i = 0; i < group_cols[g]; i++) {
            if (db_barray_close(&gr->cols[i], group_types[g][i]) != 0)
                return -1;
            gr->values[i] = gr->cols[i].p;
            gr->lengths[i] = (int)gr->cols[i].n;
            gr->formats[i] = 1;
        }
        gr->lengths[group_cols[g]] = 0;
        gr->formats[group_cols[g]] = 0; /* the owner, where the statement takes one */
    }
    b->g[G_INTENT].values[INTENT_COLS] = owner ? owner : "";
    b->g[G_ADVICE].values[ADVICE_COLS] = owner ? owner : "";
    /* 0016: a reversal is claimed by the instance that decided it (docs/switchd.md "Instances") */
    b->g[G_REVERSAL].values[REVERSAL_COLS] = owner ? owner : "";
    b->job.nstmt = nstmt;
    return 0;
}

static int batch_send(struct dbc_job *job, PGconn *pg)
{
    static const char *const names[G_max] = { JSTMT_INTENT, JSTMT_ANSWER, JSTMT_REVERSAL,
                                              JSTMT_ADVICE, JSTMT_SETTLE };
    struct jbatch *b = (struct jbatch *)job;
    for (int g = 0; g < G_max; g++) {
        const struct jgroup *gr = &b->g[g];
        if (!gr->n)
            continue;
        const char *name = g == G_ANSWER && b->upsert ? JSTMT_UPSERT : names[g];
        int np = (int)group_cols[g] + (g == G_INTENT || g == G_ADVICE || g == G_REVERSAL ? 1 : 0);
        if (PQsendQueryPrepared(pg, name, np, gr->values, gr->lengths, gr->formats, 0) != 1)
            return -1;
    }
    return 0;
}

/* The records of group gr that the statement's RETURNING rows (their keys) do not name get
 * DB_CONFLICT; the others DB_OK. Conflicts are rare: the common case is a count. */
static void group_results(struct db_journal *j, struct jgroup *gr, const PGresult *r)
{
    int rows = r ? PQntuples(r) : 0;
    for (unsigned i = 0; i < gr->n; i++)
        gr->status[i] = rows == (int)gr->n ? DB_OK : DB_CONFLICT;
    if (rows == (int)gr->n)
        return;
    for (int row = 0; row < rows; row++) {
        for (unsigned i = 0; i < gr->n; i++) {
            const struct db_auth_record *rec = &j->slots[gr->rec[i]].rec;
            if (gr->status[i] == DB_OK || strcmp(PQgetvalue(r, row, 0), rec->request_date) != 0 ||
                strcmp(PQgetvalue(r, row, 1), rec->acquirer_id) != 0 ||
                strcmp(PQgetvalue(r, row, 2), rec->terminal_id) != 0 ||
                strcmp(PQgetvalue(r, row, 3), rec->stan) != 0 ||
                strcmp(PQgetvalue(r, row, 4), rec->transmission_time) != 0 ||
                strncmp(PQgetvalue(r, row, 5), rec->mti, 3) != 0 ||
                (PQnfields(r) > 6 && strcmp(PQgetvalue(r, row, 6), rec->issuer_stan) != 0))
                continue;
            gr->status[i] = DB_OK;
            break;
        }
    }
    /* A record that lost to another of the same identity in this very batch (a refusal and the
     * request replacing it, or a repeat folded onto its original) is written as if sequentially:
     * superseded, not refused. Only a row from outside the batch is a conflict. */
    for (unsigned i = 0; i < gr->n; i++) {
        const struct db_auth_record *a = &j->slots[gr->rec[i]].rec;
        for (unsigned k = 0; k < gr->n && gr->status[i] == DB_CONFLICT; k++) {
            const struct db_auth_record *b = &j->slots[gr->rec[k]].rec;
            if (k != i && gr->status[k] == DB_OK && strcmp(a->request_date, b->request_date) == 0 &&
                strcmp(a->acquirer_id, b->acquirer_id) == 0 &&
                strcmp(a->terminal_id, b->terminal_id) == 0 && strcmp(a->stan, b->stan) == 0 &&
                strcmp(a->transmission_time, b->transmission_time) == 0 &&
                memcmp(a->mti, b->mti, 3) == 0 && a->kind == DB_REC_ANSWER)
                gr->status[i] = DB_OK;
        }
    }
}

/* ---- the spool ----------------------------------------------------------------------------- */

/* A group of spooled records was fsync'd (err 0) or could not be: acknowledge or fail them. */
static void on_spool_synced(void *arg, const uint32_t *slots, unsigned n, int err)
{
    struct db_journal *j = arg;
    if (err)
        j->st.failed += n;
    else
        j->st.spooled += n;
    j_complete(j, slots, n, err ? DB_E_SPOOL : DB_SPOOLED);
    j_maybe_replay(j); /* between two groups: the moment the live file can be handed over */
    j_check_drained(j);
}

/* The record of a slot goes to the spool; its callback waits for the group's fdatasync. */
static void j_spool(struct db_journal *j, uint32_t slot)
{
    if (spool_writer_append(j->spool, &j->slots[slot].rec, slot, j->draining) != 0) {
        j->st.failed++;
        j_complete(j, &slot, 1, DB_E_SPOOL);
    }
}

/* ---- slots and queue ----------------------------------------------------------------------- */

static unsigned j_in_use(const struct db_journal *j)
{
    return j->o.queue_max - j->nfree;
}

/* Frees the slots and then calls their callbacks, each with its status (status[i], or the one
 * given). The callbacks are copied out first: a callback may submit new records, which reuses
 * freed slots and may even complete other work (nested calls stack up in cbq). The drain signal
 * comes last. */
static void j_complete_each(struct db_journal *j, const uint32_t *slots, const int *status,
                            unsigned n)
{
    unsigned base = j->cbq_n;
    unsigned pushed = 0;
    for (unsigned i = 0; i < n; i++) {
        struct jslot *s = &j->slots[slots[i]];
        if (j->cbq_n < j->cbq_cap) {
            j->cbq[j->cbq_n++] = (struct jcb){ s->cb, s->arg, status[i] };
            pushed++;
        } else {
            at_log(AT_LOG_ERROR, "journal_callback_stack_full"); /* cannot happen: 2x queue */
        }
        j->free_idx[j->nfree++] = slots[i];
    }
    for (unsigned i = 0; i < pushed; i++)
        j->cbq[base + i].cb(j->cbq[base + i].arg, j->cbq[base + i].status);
    j->cbq_n = base;
    if (j->pressured && j_in_use(j) < j->o.queue_low) {
        j->pressured = false;
        if (j->o.on_drain)
            j->o.on_drain(j->o.drain_arg);
    }
}

static void j_complete(struct db_journal *j, const uint32_t *slots, unsigned n, int status)
{
    enum { CHUNK = 256 };
    int st[CHUNK];
    for (unsigned i = 0; i < CHUNK; i++)
        st[i] = status;
    for (unsigned off = 0; off < n; off += CHUNK)
        j_complete_each(j, slots + off, st, n - off < CHUNK ? n - off : CHUNK);
}

static void wait_push_back(struct db_journal *j, uint32_t slot)
{
    j->wait[(j->wait_head + j->wait_n) % j->o.queue_max] = slot;
    j->wait_n++;
}

static void wait_push_front(struct db_journal *j, uint32_t slot)
{
    j->wait_head = (j->wait_head + j->o.queue_max - 1) % j->o.queue_max;
    j->wait[j->wait_head] = slot;
    j->wait_n++;
}

static uint32_t wait_pop(struct db_journal *j)
{
    uint32_t slot = j->wait[j->wait_head];
    j->wait_head = (j->wait_head + 1) % j->o.queue_max;
    j->wait_n--;
    return slot;
}

static void j_check_drained(struct db_journal *j)
{
    if (j->draining && j_in_use(j) == 0 && j->drain_done) {
        struct timeval tv = { 0, 0 };
        evtimer_add(j->drain_timer, &tv);
    }
}

/* ---- batch completion ---------------------------------------------------------------------- */

static void replay_batch_done(struct db_journal *j, struct jbatch *b);

/* (Re)builds the statements of live batch b from its slots b->idx[0..n). 0, or -1 when out of
 * memory. */
static int rebuild_batch(struct db_journal *j, struct jbatch *b, bool upsert)
{
    unsigned n = b->n;
    int rc = batch_reset(b);
    b->n = n;
    b->upsert = upsert;
    for (unsigned i = 0; i < n; i++)
        rc |= batch_add(b, b->idx[i], &j->slots[b->idx[i]].rec);
    return rc != 0 || batch_close(b, j->o.owner) != 0 ? -1 : 0;
}

/* A live batch committed: INTENTs and (upserted) ANSWERs learn from the RETURNING rows whether
 * they were written or met a taken identity; REVERSALs are written either way. Fills done_slot
 * and done_status (group by group) before the results are cleared. Returns the record count. */
static unsigned batch_statuses(struct db_journal *j, struct jbatch *b)
{
    unsigned k = 0;
    for (int g = G_INTENT; g < G_SETTLE; g++) {
        struct jgroup *gr = &b->g[g];
        if (!gr->n)
            continue;
        if (g == G_INTENT || (g == G_ANSWER && b->upsert)) {
            group_results(j, gr, b->res[gr->res]);
        } else {
            for (unsigned i = 0; i < gr->n; i++)
                gr->status[i] = DB_OK;
        }
        for (unsigned i = 0; i < gr->n; i++) {
            if (gr->status[i] == DB_CONFLICT)
                j->st.conflicts++;
            b->done_slot[k] = gr->rec[i];
            b->done_status[k++] = gr->status[i];
        }
    }
    return k;
}

static void batch_done(struct dbc_job *job)
{
    struct jbatch *b = (struct jbatch *)job;
    struct jconn *jc = b->jc;
    struct db_journal *j = jc->j;
    const struct db_error *e = &job->err;
    unsigned done = e->code == 0 && !b->replay ? batch_statuses(j, b) : 0;
    for (int i = 0; i < G_max; i++) {
        b->g[i].n = 0;
        PQclear(b->res[i]);
        b->res[i] = NULL;
    }
    jc->busy = false;
    if (jc->timeout)
        evtimer_del(jc->timeout);
    if (b->replay) {
        replay_batch_done(j, b);
        j_dispatch(j, false);
        return;
    }
    if (e->code == DB_E_SQL && !b->upsert && strcmp(e->sqlstate, "23505") == 0 &&
        jc->dbc.state == DBC_READY) {
        /* A key already stored (a repeat, a refusal being replaced, or a record a spool replay or
         * another batch holds): the same batch again with the upsert. */
        if (rebuild_batch(j, b, true) == 0) {
            jc->busy = true;
            jc_arm_timeout(jc);
            dbc_submit(&jc->dbc, &b->job);
            return;
        }
        for (unsigned i = b->n; i-- > 0;) /* out of memory: retried from the queue */
            wait_push_front(j, b->idx[i]);
        b->n = 0;
        j_dispatch(j, false);
        return;
    }
    unsigned n = b->n;
    b->n = 0;
    if (e->code == 0) {
        j->st.committed += n;
        j_complete_each(j, b->done_slot, b->done_status, done);
    } else if (e->code == DB_E_CONN || e->code == DB_E_CLOSED ||
               (e->action == DB_ACTION_RETRY && n > 0 && j->slots[b->idx[0]].retries >= 3)) {
        /* Outcome unknown (it may have committed): the spool replay is idempotent. */
        at_log(AT_LOG_WARN, "journal_batch_to_spool", AT_UINT("records", n),
               AT_STR("sqlstate", e->sqlstate), AT_STR("error", e->message));
        for (unsigned i = 0; i < n; i++)
            j_spool(j, b->idx[i]);
    } else if (e->action == DB_ACTION_RETRY) {
        for (unsigned i = n; i-- > 0;) {
            j->slots[b->idx[i]].retries++;
            wait_push_front(j, b->idx[i]);
        }
    } else if (n > 1) {
        /* The database refused the batch: send each record alone to find the culprit. */
        at_log(AT_LOG_WARN, "journal_batch_refused", AT_UINT("records", n),
               AT_STR("sqlstate", e->sqlstate), AT_STR("error", e->message));
        for (unsigned i = n; i-- > 0;) {
            j->slots[b->idx[i]].solo = true;
            wait_push_front(j, b->idx[i]);
        }
    } else if (n == 1) {
        struct jslot *s = &j->slots[b->idx[0]];
        at_log(AT_LOG_ERROR, "journal_record_refused", AT_STR("acquirer_id", s->rec.acquirer_id),
               AT_STR("terminal_id", s->rec.terminal_id), AT_STR("stan", s->rec.stan),
               AT_UINT("kind", s->rec.kind), AT_STR("sqlstate", e->sqlstate),
               AT_STR("error", e->message));
        j->st.failed++;
        j_complete(j, b->idx, 1, DB_E_SQL);
    }
    j_dispatch(j, j->draining || j->closing);
    j_maybe_replay(j);
    j_check_drained(j);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* A batch that has not committed within batch_timeout_ms means a hung server (a stuck disk, a
 * lock): the connection is dropped, so the batch fails as DB_E_CONN and goes to the spool, and
 * the writer keeps acknowledging instead of filling up behind it. */
static void on_batch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct jconn *jc = arg;
    if (!jc->busy)
        return;
    at_log(AT_LOG_WARN, "journal_batch_timeout", AT_UINT("conn", jc->dbc.id),
           AT_UINT("timeout_ms", jc->j->o.batch_timeout_ms));
    dbc_abort(&jc->dbc, "batch timed out");
}

static void jc_arm_timeout(struct jconn *jc)
{
    uint32_t ms = jc->j->o.batch_timeout_ms;
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    if (jc->timeout)
        evtimer_add(jc->timeout, &tv);
}

static struct jconn *j_idle_conn(struct db_journal *j)
{
    for (unsigned i = 0; i < j->nconn; i++)
        if (j->conns[i].dbc.state == DBC_READY && !j->conns[i].busy)
            return &j->conns[i];
    return NULL;
}

/* Adaptive group commit. A partial batch goes out at once when a connection is free — a lone
 * record on an idle writer is committed without waiting for anything — and records that arrive
 * while every connection is busy wait for the first one to come back, forming the next batch:
 * the batch grows with the load, by itself. Only with batch_delay_us set does a partial batch
 * linger, and only while another batch is in flight (the writer is under load), never on an
 * idle writer. */
static bool j_lingers(const struct db_journal *j)
{
    if (!j->o.batch_delay_us)
        return false;
    for (unsigned i = 0; i < j->nconn; i++)
        if (j->conns[i].busy)
            return true;
    return false;
}

/* Arms the batch timer for the oldest waiting record (batch_delay_us under load only). Only
 * useful when a connection is idle: otherwise the next batch completion (or a connection coming
 * up) dispatches, and a timer that is already due would only spin the loop. */
static void arm_flush_timer(struct db_journal *j)
{
    if (j->wait_n == 0 || !j_lingers(j) || evtimer_pending(j->flush_timer, NULL) || !j_idle_conn(j))
        return;
    uint64_t age_us = (at_mono_ns() - j->slots[j->wait[j->wait_head]].enq_ns) / 1000;
    uint64_t left = age_us >= j->o.batch_delay_us ? 0 : j->o.batch_delay_us - age_us;
    struct timeval tv = { .tv_sec = left / 1000000, .tv_usec = left % 1000000 };
    evtimer_add(j->flush_timer, &tv);
}

/* Sends batches to idle connections: full ones always, partial ones unless they linger
 * (j_lingers: batch_delay_us under load; force — the flush timer, a drain — ends that). While
 * the database is down the waiting records go to the spool instead. */
/* Records reach PostgreSQL in the order they became durable. While any spool holds records not
 * yet replayed, new records join the spool instead of racing the replay: a live ANSWER that
 * settles an INTENT still waiting in the spool would commit first, its DELETE would miss, and the
 * replayed INTENT would then stay in switch.inflight. The replay catches up chunk by chunk
 * (records spooled meanwhile form the next file) and live batches resume when nothing is left. */
static bool j_backlog(const struct db_journal *j)
{
    return j->replaying || j->replay_file || spool_writer_has_data(j->spool) ||
           spool_writer_busy(j->spool);
}

static void j_dispatch(struct db_journal *j, bool force)
{
    if (j->down || j_backlog(j)) {
        if (j->wait_n == 0)
            return;
        while (j->wait_n > 0)
            j_spool(j, wait_pop(j));
        return;
    }
    while (j->wait_n > 0) {
        if (!force && j->wait_n < j->o.batch_max && j_lingers(j)) {
            uint64_t age_us = (at_mono_ns() - j->slots[j->wait[j->wait_head]].enq_ns) / 1000;
            if (age_us < j->o.batch_delay_us)
                break;
        }
        struct jconn *jc = j_idle_conn(j);
        if (!jc)
            break;
        struct jbatch *b = &jc->batch;
        b->n = 0;
        while (j->wait_n > 0 && b->n < j->o.batch_max) {
            uint32_t slot = j->wait[j->wait_head];
            if (j->slots[slot].solo && b->n > 0)
                break;
            (void)wait_pop(j);
            b->idx[b->n++] = slot;
            if (j->slots[slot].solo)
                break;
        }
        if (rebuild_batch(j, b, false) != 0) {
            /* Out of memory building parameters: keep the records and try again in 10 ms (no
             * batch window arms the flush timer, and an idle switch may submit nothing more). */
            for (unsigned i = b->n; i-- > 0;)
                wait_push_front(j, b->idx[i]);
            b->n = 0;
            struct timeval retry = { 0, 10000 };
            evtimer_add(j->flush_timer, &retry);
            return;
        }
        jc->busy = true;
        j->st.batches++;
        jc_arm_timeout(jc);
        dbc_submit(&jc->dbc, &b->job);
    }
    arm_flush_timer(j);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    j_dispatch(arg, true);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    j_dispatch(arg, false);
}

static bool j_any_ready(const struct db_journal *j)
{
    for (unsigned i = 0; i < j->nconn; i++)
        if (j->conns[i].dbc.state == DBC_READY)
            return true;
    return false;
}

static void j_on_state(struct dbc *c, bool up)
{
    struct jconn *jc = c->owner;
    struct db_journal *j = jc->j;
    bool was_down = j->down;
    j->down = !j_any_ready(j);
    if (was_down != j->down)
        at_log(j->down ? AT_LOG_WARN : AT_LOG_INFO, j->down ? "journal_db_down" : "journal_db_up");
    if (j->closing)
        return;
    j_dispatch(j, j->draining);
    j_maybe_replay(j);
}

/* ---- replayed: nothing of any spool left to replay ---------------------------------------- */

static bool j_replayed(const struct db_journal *j)
{
    return !j_backlog(j);
}

static void j_check_replayed(struct db_journal *j)
{
    if (j->replayed_cb && j_replayed(j))
        event_active(j->replayed_ev, 0, 0);
}

static void on_replayed(evutil_socket_t fd, short what, void *arg)
{
    struct db_journal *j = arg;
    if (!j->replayed_cb || !j_replayed(j))
        return;
    void (*done)(void *) = j->replayed_cb;
    j->replayed_cb = NULL;
    done(j->replayed_arg);
}

bool db_journal_replay_pending(const struct db_journal *j)
{
    return !j_replayed(j);
}

void db_journal_when_replayed(struct db_journal *j, void (*done)(void *arg), void *arg)
{
    j->replayed_cb = done;
    j->replayed_arg = arg;
    j_check_replayed(j);
}

/* ---- replay -------------------------------------------------------------------------------- */

static void replay_finish(struct db_journal *j)
{
    spool_replay_finish(&j->rp);
    j->replaying = false;
    j->replay_file = false;
    j_check_replayed(j);
}

/* Starts or continues replaying: the live spool is first handed over as <spool>.replay (new
 * outage records then go to a fresh live spool), then read in chunks of REPLAY_CHUNK records, one
 * chunk in flight at a time, so the file's order is kept. The file is removed once its last chunk
 * committed. */
static void j_maybe_replay(struct db_journal *j)
{
    if (j->down || j->closing || j->replay_inflight)
        return;
    if (!j->replaying) {
        if (!j->replay_file) {
            int rc = spool_writer_handover(j->spool, j->replay_path);
            if (rc > 0)
                j_check_replayed(j);
            if (rc != 0)
                return;
            j->replay_file = true;
        }
        int rc = spool_replay_open(&j->rp);
        if (rc > 0) {
            j->replay_file = false;
            j_check_replayed(j);
            return;
        }
        j->replaying = true;
        j->replay_n = 0;
        if (rc < 0) {
            replay_finish(j);
            return;
        }
    }
    if (j->replay_n == 0) {
        j->replay_n = spool_replay_fill(&j->rp, j->replay_recs, j->replay_cap);
        if (j->replay_n == 0) {
            replay_finish(j);
            j_maybe_replay(j); /* the live spool may have filled meanwhile */
            return;
        }
    }
    struct jconn *jc = j_idle_conn(j);
    if (!jc)
        return; /* retried when a batch completes */
    struct jbatch *b = &jc->batch;
    int rc = batch_reset(b);
    b->replay = true;
    b->upsert = true;
    for (unsigned i = 0; i < j->replay_n; i++)
        rc |= batch_add(b, i, &j->replay_recs[i]);
    if (rc != 0 || batch_close(b, j->o.owner) != 0)
        return;
    b->n = j->replay_n;
    jc->busy = true;
    j->replay_inflight = true;
    jc_arm_timeout(jc);
    dbc_submit(&jc->dbc, &b->job);
}

static void replay_batch_done(struct db_journal *j, struct jbatch *b)
{
    const struct db_error *e = &b->job.err;
    j->replay_inflight = false;
    b->n = 0;
    if (e->code == 0) {
        j->st.replayed += j->replay_n;
        j->rp.total += j->replay_n;
        j->replay_n = 0;
    } else if (e->code == DB_E_SQL && e->action == DB_ACTION_FAIL) {
        /* Records that were acknowledged but that the database refuses: never dropped silently,
         * they are kept in <spool>.rejected for an operator. */
        bool kept = spool_replay_reject(&j->rp, j->replay_recs, j->replay_n);
        at_log(AT_LOG_ERROR, "journal_spool_records_refused", AT_UINT("records", j->replay_n),
               AT_STR("sqlstate", e->sqlstate), AT_STR("error", e->message),
               AT_STR("kept_in", j->rejected_path), AT_BOOL("kept", kept));
        j->replay_n = 0;
    }
    /* Connection errors: keep replay_recs and send them again when a connection is up. */
    j_maybe_replay(j);
}

/* ---- public API ----------------------------------------------------------------------------- */

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct db_journal *j = arg;
    if (j->drain_done && j_in_use(j) == 0) {
        void (*done)(void *) = j->drain_done;
        j->drain_done = NULL;
        done(j->drain_arg);
    }
}

static char *str_concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

/* Fills in the defaults and bounds of the writer's options. */
static void j_defaults(struct db_journal_opts *o)
{
    if (!o->connections)
        o->connections = 4;
    if (!o->batch_max)
        o->batch_max = 256;
    if (o->batch_max > 2000)
        o->batch_max = 2000;
    if (!o->queue_max)
        o->queue_max = 65536;
    if (o->queue_max < o->batch_max)
        o->queue_max = o->batch_max;
    if (!o->queue_low || o->queue_low >= o->queue_max)
        o->queue_low = o->queue_max / 2;
    if (!o->spool_sync_us)
        o->spool_sync_us = 2000;
    if (!o->batch_timeout_ms)
        o->batch_timeout_ms = 5000;
}

/* The writer's own copies of its strings, its slots and queues, its timers. 0 or -1. */
static int j_alloc(struct db_journal *j, const struct db_journal_opts *opts)
{
    j->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
    j->owner = strdup(opts->owner ? opts->owner : "");
    j->spool_path = strdup(opts->spool_path);
    j->replay_path = str_concat(opts->spool_path, ".replay");
    j->rejected_path = str_concat(opts->spool_path, ".rejected");
    j->o.conninfo = j->conninfo;
    j->o.owner = j->owner;
    j->o.spool_path = j->spool_path;
    j->rp.path = j->replay_path;
    j->rp.rejected_path = j->rejected_path;
    j->slots = calloc(j->o.queue_max, sizeof *j->slots);
    j->free_idx = calloc(j->o.queue_max, sizeof *j->free_idx);
    j->wait = calloc(j->o.queue_max, sizeof *j->wait);
    j->cbq_cap = 2 * j->o.queue_max;
    j->cbq = calloc(j->cbq_cap, sizeof *j->cbq);
    j->replay_cap = j->o.batch_max > REPLAY_CHUNK ? j->o.batch_max : REPLAY_CHUNK;
    j->replay_recs = calloc(j->replay_cap, sizeof *j->replay_recs);
    j->conns = calloc(j->nconn, sizeof *j->conns);
    j->flush_timer = evtimer_new(j->base, on_flush_timer, j);
    j->kick = event_new(j->base, -1, 0, on_kick, j);
    j->drain_timer = evtimer_new(j->base, on_drain_timer, j);
    j->replayed_ev = event_new(j->base, -1, 0, on_replayed, j);
    if (!j->conninfo || !j->owner || !j->spool_path || !j->replay_path || !j->rejected_path ||
        !j->slots || !j->free_idx || !j->wait || !j->cbq || !j->replay_recs || !j->conns ||
        !j->flush_timer || !j->kick || !j->drain_timer || !j->replayed_ev)
        return -1;
    for (unsigned i = 0; i < j->o.queue_max; i++)
        j->free_idx[i] = j->o.queue_max - 1 - i;
    j->nfree = j->o.queue_max;
    return 0;
}

/* Connection i with its batch: the engine's callbacks and the batch's preallocated arrays (a
 * replay chunk per statement, batch_max slots). 0 or -1; the caller frees on failure. */
static int jconn_init(struct db_journal *j, unsigned i)
{
    struct jconn *jc = &j->conns[i];
    if (dbc_init(&jc->dbc, j->base, j->conninfo, i) != 0)
        return -1;
    jc->j = j;
    jc->dbc.owner = jc;
    jc->dbc.on_state = j_on_state;
    jc->dbc.app_name = "atlas-journal";
    jc->dbc.options = JOURNAL_SERVER_OPTIONS;
    jc->dbc.preps = journal_preps;
    jc->dbc.npreps = sizeof journal_preps / sizeof journal_preps[0];
    if (j->o.reconnect_min_ms)
        jc->dbc.backoff_min_ms = j->o.reconnect_min_ms;
    if (j->o.reconnect_max_ms)
        jc->dbc.backoff_max_ms = j->o.reconnect_max_ms;
    struct jbatch *b = &jc->batch;
    b->jc = jc;
    b->job.nstmt = 1;
    b->job.res = b->res;
    b->job.send = batch_send;
    b->job.done = batch_done;
    bool ok = true;
    for (int g = 0; g < G_max; g++) {
        b->g[g].rec = calloc(j->replay_cap, sizeof *b->g[g].rec);
        b->g[g].status = calloc(j->replay_cap, sizeof *b->g[g].status);
        ok = ok && b->g[g].rec && b->g[g].status;
    }
    b->idx = calloc(j->o.batch_max, sizeof *b->idx);
    b->done_slot = calloc(j->o.batch_max, sizeof *b->done_slot);
    b->done_status = calloc(j->o.batch_max, sizeof *b->done_status);
    jc->timeout = evtimer_new(j->base, on_batch_timeout, jc);
    return ok && b->idx && b->done_slot && b->done_status && jc->timeout ? 0 : -1;
}

int db_journal_new(struct event_base *base, const struct db_journal_opts *opts,
                   struct db_journal **out)
{
    if (!base || !opts || !out || !opts->spool_path || !*opts->spool_path)
        return DB_E_INVALID;
    struct db_journal *j = calloc(1, sizeof *j);
    if (!j)
        return DB_E_SYS;
    j->base = base;
    j->o = *opts;
    j_defaults(&j->o);
    j->nconn = j->o.connections;
    if (j_alloc(j, opts) != 0) {
        j->nconn = 0; /* no connection initialised */
        db_journal_free(j);
        return DB_E_SYS;
    }
    for (unsigned i = 0; i < j->nconn; i++) {
        if (jconn_init(j, i) != 0) {
            j->nconn = i + 1;
            db_journal_free(j);
            return DB_E_SYS;
        }
    }
    /* A spool left by an earlier process is replayed once the database answers; the spool must
     * be writable before anything is promised. */
    const struct spool_writer_opts so = { .base = base,
                                          .path = j->spool_path,
                                          .sync_us = j->o.spool_sync_us,
                                          .max_records = j->o.queue_max,
                                          .on_synced = on_spool_synced,
                                          .arg = j };
    int rc = spool_writer_open(&so, &j->spool);
    if (rc != 0) {
        db_journal_free(j);
        return rc;
    }
    struct stat sb;
    j->replay_file = stat(j->replay_path, &sb) == 0;
    if (spool_writer_has_data(j->spool) || j->replay_file)
        at_log(AT_LOG_INFO, "journal_spool_found", AT_STR("path", j->spool_path));
    for (unsigned i = 0; i < j->nconn; i++)
        dbc_start(&j->conns[i].dbc);
    *out = j;
    return 0;
}

int db_journal_submit(struct db_journal *j, const struct db_auth_record *rec, db_journal_cb cb,
                      void *arg)
{
    if (j->draining || j->closing)
        return DB_E_CLOSED;
    if (!cb || db_auth_record_check(rec, NULL) != 0)
        return DB_E_INVALID;
    if (j->nfree == 0) {
        j->pressured = true;
        return DB_E_FULL;
    }
    uint32_t slot = j->free_idx[--j->nfree];
    struct jslot *s = &j->slots[slot];
    s->rec = *rec;
    s->cb = cb;
    s->arg = arg;
    s->enq_ns = at_mono_ns();
    s->retries = 0;
    s->solo = false;
    j->st.submitted++;
    if (db_journal_saturated(j))
        j->pressured = true;
    wait_push_back(j, slot);
    /* A full batch goes now; otherwise at the end of this loop pass, so that the records one
     * callback (one read of many messages) submits share a batch, and no timer runs. */
    if (j->down || j->wait_n >= j->o.batch_max)
        j_dispatch(j, false);
    else
        event_active(j->kick, EV_TIMEOUT, 0);
    return 0;
}

bool db_journal_saturated(const struct db_journal *j)
{
    unsigned high = j->o.queue_max > j->o.batch_max ? j->o.queue_max - j->o.batch_max : 0;
    return j_in_use(j) >= high;
}

void db_journal_get_stats(const struct db_journal *j, struct db_journal_stats *st)
{
    *st = j->st;
    st->queued = j_in_use(j);
    st->connected = 0;
    for (unsigned i = 0; i < j->nconn; i++)
        if (j->conns[i].dbc.state == DBC_READY)
            st->connected++;
    st->db_up = !j->down && st->connected > 0;
    struct stat sb;
    st->spool_pending =
        spool_writer_has_data(j->spool) || j->replaying || stat(j->replay_path, &sb) == 0;
}

void db_journal_drain(struct db_journal *j, void (*done)(void *arg), void *arg)
{
    j->draining = true;
    j->drain_done = done;
    j->drain_arg = arg;
    j_dispatch(j, true);
    spool_writer_kick(j->spool);
    j_check_drained(j);
}

void db_journal_free(struct db_journal *j)
{
    if (!j)
        return;
    j->closing = true;
    /* In-flight batches come back as DB_E_CLOSED and go to the spool, like waiting records:
     * everything not yet committed ends durable in the spool, acknowledged as DB_SPOOLED. */
    for (unsigned i = 0; i < j->nconn; i++)
        dbc_close(&j->conns[i].dbc, DB_E_CLOSED);
    j->down = true;
    if (j->wait)
        j_dispatch(j, true);
    spool_writer_close(j->spool); /* syncs what is left; its callbacks still run */
    j->spool = NULL;
    if (j->replaying)
        spool_reader_close(&j->rp.rd);
    for (unsigned i = 0; i < j->nconn; i++) {
        struct jbatch *b = &j->conns[i].batch;
        for (int g = 0; g < G_max; g++) {
            for (int k = 0; k < MAX_COLS; k++)
                db_barray_free(&b->g[g].cols[k]);
            free(b->g[g].rec);
            free(b->g[g].status);
        }
        free(b->idx);
        free(b->done_slot);
        free(b->done_status);
        if (j->conns[i].timeout)
            event_free(j->conns[i].timeout);
    }
    if (j->flush_timer)
        event_free(j->flush_timer);
    if (j->kick)
        event_free(j->kick);
    if (j->drain_timer)
        event_free(j->drain_timer);
    if (j->replayed_ev)
        event_free(j->replayed_ev);
    free(j->conns);
    free(j->slots);
    free(j->free_idx);
    free(j->wait);
    free(j->cbq);
    free(j->replay_recs);
    free(j->conninfo);
    free(j->owner);
    free(j->spool_path);
    free(j->replay_path);
    free(j->rejected_path);
    free(j);
}
