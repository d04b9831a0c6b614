/* A transfer row's later writes (docs/transfers.md, "When the database goes away"), written
 * until they land.
 *
 * The saga's row (switch.transfers) is moved on — `aft`, `completed`, `failed`, `reversed` — after
 * what each state stands for is durable. While PostgreSQL is unreachable those UPDATEs fail; a
 * switchd that keeps running never runs switch.recover_transfers (only a start does), so a change
 * that is dropped leaves the row `started` or `aft` for good, a transfer that atlas-reconcile
 * must call unfinished though its money is settled. Each failed write is kept here and sent
 * again every second until PostgreSQL takes it. The UPDATEs are idempotent and never leave a
 * final state (db_transfer_update), so a late or repeated one changes nothing it must not.
 *
 * The same holds for a switch.transfer_begin that failed without an answer: its row may have
 * been committed though the sender was told 96 and no leg was ever started (a leg needs the
 * row's id): that row is made `failed` by its sender's identity (db_transfer_abandon).
 *
 * Memory only: if switchd stops before a write lands, the row is `started` or `aft` at the next
 * start and switch.recover_transfers settles it from the journal. */
#include "switchd.h"

#include "db.h"
#include "log.h"
#include "xfer.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_RETRY_S  1
#define ROWS_MAX      4096 /* writes waiting at once; beyond, recovery at the next start */
#define ROWS_ATTEMPTS 900  /* about a quarter of an hour of retries */

struct row_job {
    struct row_job *next;
    struct sw_server *srv;
    bool abandon; /* db_transfer_abandon(sender) rather than db_transfer_update(ch) */
    struct db_transfer_change ch;
    struct db_request_id sender;
    unsigned attempts;
};

struct sw_xfer_rows {
    struct row_job *head, **tail; /* waiting for the next retry */
    unsigned waiting;
    struct event *timer;
};

static void send_job(struct row_job *j);

static void job_log(int level, const char *event, const struct row_job *j, const char *why)
{
    if (j->abandon)
        at_log(level, event, AT_STR("state", "failed"), AT_STR("by", "sender identity"),
               AT_INT("attempts", j->attempts), AT_STR("reason", why));
    else
        at_log(level, event, AT_INT("transfer_id", j->ch.transfer_id), AT_STR("state", j->ch.state),
               AT_INT("attempts", j->attempts), AT_STR("reason", why));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sw_xfer_rows *r = arg;
    struct row_job *j = r->head;
    r->head = NULL;
    r->tail = &r->head;
    r->waiting = 0;
    while (j) {
        struct row_job *next = j->next;
        j->next = NULL;
        send_job(j);
        j = next;
    }
}

/* A write PostgreSQL did not take: kept for the next retry, or given up (logged). */
static void park(struct row_job *j, const char *why)
{
    struct sw_server *srv = j->srv;
    struct sw_xfer_rows *r = srv->xfer_rows;
    j->attempts++;
    if (!r && !srv->stopping) {
        r = calloc(1, sizeof *r);
        if (r) {
            r->tail = &r->head;
            r->timer = event_new(srv->base, -1, 0, on_retry, r);
            if (!r->timer) {
                free(r);
                r = NULL;
            }
        }
        srv->xfer_rows = r;
    }
    if (srv->stopping) {
        /* The row stays `started` / `aft`: switch.recover_transfers settles it at the start. */
        job_log(AT_LOG_WARN, "transfer_state_left_to_recovery", j, why);
        free(j);
        return;
    }
    if (!r || j->attempts > ROWS_ATTEMPTS || r->waiting >= ROWS_MAX) {
        job_log(AT_LOG_ERROR, "transfer_state_dropped", j, r ? why : "out of memory");
        free(j);
        return;
    }
    if (j->attempts == 1)
        job_log(AT_LOG_WARN, "transfer_state_deferred", j, why);
    *r->tail = j;
    r->tail = &j->next;
    r->waiting++;
    if (!evtimer_pending(r->timer, NULL)) {
        struct timeval tv = { ROWS_RETRY_S, 0 };
        evtimer_add(r->timer, &tv);
    }
}

static void on_written(void *arg, const struct db_error *err)
{
    struct row_job *j = arg;
    if (err->code == 0) {
        if (j->attempts > 0)
            job_log(AT_LOG_INFO, "transfer_state_written", j, "database reachable again");
        free(j);
        return;
    }
    park(j, err->message[0] ? err->message : db_strerror(err->code));
}

static void send_job(struct row_job *j)
{
    struct sw_server *srv = j->srv;
    int rc = DB_E_CLOSED;
    if (srv->db && !srv->stopping)
        rc = j->abandon
                 ? db_transfer_abandon(srv->db, &j->sender, srv->conf.instance_id, on_written, j)
                 : db_transfer_update(srv->db, &j->ch, on_written, j);
    if (rc != 0)
        park(j, db_strerror(rc));
}

static void submit(struct sw_server *srv, struct row_job *j)
{
    if (!j) {
        at_log(AT_LOG_ERROR, "transfer_state_dropped", AT_STR("reason", "out of memory"));
        return;
    }
    j->srv = srv;
    send_job(j);
}

void sw_xfer_row_change(struct sw_server *srv, const struct db_transfer_change *ch)
{
    struct row_job *j = calloc(1, sizeof *j);
    if (j)
        j->ch = *ch;
    submit(srv, j);
}

void sw_xfer_row_abandon(struct sw_server *srv, const struct db_request_id *sender)
{
    struct row_job *j = calloc(1, sizeof *j);
    if (j) {
        j->abandon = true;
        j->sender = *sender;
    }
    submit(srv, j);
}

void sw_xfer_rows_free(struct sw_server *srv)
{
    struct sw_xfer_rows *r = srv->xfer_rows;
    if (!r)
        return;
    srv->xfer_rows = NULL;
    if (r->waiting)
        at_log(AT_LOG_WARN, "transfer_states_unwritten", AT_UINT("count", r->waiting),
               AT_STR("action", "switch.recover_transfers settles them at the next start"));
    while (r->head) {
        struct row_job *j = r->head;
        r->head = j->next;
        free(j);
    }
    event_free(r->timer);
    free(r);
}
