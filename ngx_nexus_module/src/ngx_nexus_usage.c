
/*
 * Copyright (C) Nexus authors
 *
 * Usage events, written to PostgreSQL in batches.  Each worker keeps the
 * events of its requests in memory, each already rendered as a row of
 * COPY's text format, and sends them in one COPY every nexus_usage_flush,
 * or as soon as nexus_usage_batch of them are waiting.  One batch is in
 * flight at a time, and carries every event waiting when it goes (at most
 * NGX_NEXUS_USAGE_SEND_MAX): so batches stay small while the worker is
 * quiet, and grow with its load by themselves.  Small batches matter on a
 * host PostgreSQL shares: a large one keeps a core busy long enough to
 * delay the requests scheduled behind it (at one connection, 500-event
 * batches made the added p99 1.3 ms, 20-event ones 0.15 ms, for the same
 * throughput).  COPY is the cheapest way in for PostgreSQL (a 500-row
 * batch took it 2.9 ms against 7 ms for an INSERT from JSON), but it has
 * no ON CONFLICT: so a batch is sent that way only while nothing says it
 * may have landed already.  A failed batch goes back to the head of the
 * queue and is sent again through a temporary table and INSERT ... ON
 * CONFLICT DO NOTHING: the primary key (created_at, request_id) makes a
 * batch that did land harmless.
 *
 * Memory is bounded: at most nexus_usage_queue events wait per worker;
 * beyond that, while PostgreSQL is away, the oldest waiting event is
 * dropped and counted (ngx_nexus_usage_dropped()).
 *
 * Nothing is lost when a worker exits gracefully (nginx -s reload or
 * quit): the flush timer is not cancelable while events wait, so nginx
 * keeps the exiting worker alive until they are written, and the query
 * timer of the pool does the same while a batch is in flight.  The worker
 * learns that it is exiting at once, from an idle connection of its own
 * that nginx closes then, and writes what it holds without waiting for
 * its next tick.  An exiting worker cannot reconnect to PostgreSQL: if
 * its connections are gone, or a few attempts fail, it gives up, logs how
 * many events it lost, and exits.  What a crashed (or killed) worker held
 * in memory is lost: at most one flush interval of its requests, or one
 * batch.
 *
 * One worker per node also keeps the daily partitions created ahead, by
 * calling nexus_usage_partitions() every hour.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_usage.h"

#include <nx_copy.h>


/* bytes kept of each string of an event: names, ids, codes */
#define NGX_NEXUS_USAGE_STR_MAX         256

/* eight strings escaped (3 bytes per byte at worst), and the numbers */
#define NGX_NEXUS_USAGE_ROW_MAX                                              \
    (512 + 8 * (NX_COPY_ESCAPED_MAX(NGX_NEXUS_USAGE_STR_MAX) + 1))

#define NGX_NEXUS_USAGE_BATCH_MAX       10000
#define NGX_NEXUS_USAGE_SEND_MAX        10000
#define NGX_NEXUS_USAGE_QUEUE_MAX       1000000

/* an exiting worker cannot reconnect: it tries a batch this many times */
#define NGX_NEXUS_USAGE_EXIT_TRIES      3
#define NGX_NEXUS_USAGE_EXIT_RETRY      200

#define NGX_NEXUS_USAGE_PARTS_EVERY     (3600 * 1000)
#define NGX_NEXUS_USAGE_PARTS_RETRY     (60 * 1000)
#define NGX_NEXUS_USAGE_PARTS_AHEAD     "7"


/*
 * Rows are cut from chunks, one after the other, rather than malloc()ed
 * one by one (a malloc() and a free() per request were 1.3% of a call's
 * CPU): rows go in the order they came, so a chunk is freed soon after
 * its last row is written, and the one being cut is reused once empty.
 */
typedef struct {
    ngx_uint_t                  live;       /* rows in it not yet freed */
    u_char                     *pos;
    u_char                     *end;
} ngx_nexus_usage_chunk_t;


typedef struct {
    ngx_queue_t                 queue;
    ngx_nexus_usage_chunk_t    *chunk;
    size_t                      len;
    u_char                      data[1];    /* a COPY row, with "\n" */
} ngx_nexus_usage_row_t;


#define NGX_NEXUS_USAGE_CHUNK           (64 * 1024)


static void ngx_nexus_usage_watch(ngx_cycle_t *cycle);
static void ngx_nexus_usage_shutdown(ngx_event_t *ev);
static void ngx_nexus_usage_timer(ngx_event_t *ev);
static void ngx_nexus_usage_arm(void);
static void ngx_nexus_usage_flush(void);
static ngx_nexus_usage_row_t *ngx_nexus_usage_row_alloc(size_t len);
static void ngx_nexus_usage_row_free(ngx_nexus_usage_row_t *row);
static void ngx_nexus_usage_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_usage_retry(void);
static void ngx_nexus_usage_give_up(ngx_queue_t *queue, ngx_uint_t *n,
    const char *why);
static void ngx_nexus_usage_log_drops(void);
static u_char *ngx_nexus_usage_str(u_char *p, const ngx_str_t *s);
static u_char *ngx_nexus_usage_id(u_char *p, int64_t id);
static void ngx_nexus_usage_parts_timer(ngx_event_t *ev);
static void ngx_nexus_usage_parts_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);


static ngx_uint_t    ngx_nexus_usage_copy_stmt;
static ngx_uint_t    ngx_nexus_usage_again_stmt;
static ngx_uint_t    ngx_nexus_usage_again;         /* may have landed */
static ngx_uint_t    ngx_nexus_usage_parts_stmt;

static ngx_uint_t    ngx_nexus_usage_on;
static ngx_msec_t    ngx_nexus_usage_interval;
static ngx_uint_t    ngx_nexus_usage_batch;
static ngx_nexus_usage_chunk_t  *ngx_nexus_usage_chunk;
/* "YYYY-MM-DD HH:MM:SS" of the second events were last stamped in */
static int64_t       ngx_nexus_usage_ts_sec = -1;
static u_char        ngx_nexus_usage_ts[sizeof("YYYY-MM-DD HH:MM:SS")];
static ngx_uint_t    ngx_nexus_usage_cap;

static ngx_queue_t   ngx_nexus_usage_waiting;
static ngx_uint_t    ngx_nexus_usage_nwaiting;
static ngx_queue_t   ngx_nexus_usage_sent;          /* the batch in flight */
static ngx_uint_t    ngx_nexus_usage_nsent;

static ngx_uint_t    ngx_nexus_usage_ndropped;
static ngx_uint_t    ngx_nexus_usage_unlogged;      /* dropped, not logged */
static ngx_uint_t    ngx_nexus_usage_failing;
static ngx_uint_t    ngx_nexus_usage_exit_tries;

static ngx_event_t   ngx_nexus_usage_ev;
static ngx_event_t   ngx_nexus_usage_parts_ev;
static ngx_connection_t  *ngx_nexus_usage_idle;

/* timers log their connection's fd at debug level: give them one */
static ngx_connection_t  ngx_nexus_usage_conn = { .fd = (ngx_socket_t) -1 };


#define NGX_NEXUS_USAGE_COLUMNS                                              \
    "request_id, tenant_id, key_id, key_prefix, endpoint, model_requested,"  \
    " model_served, provider, attempts, status, outcome, error_code,"        \
    " prompt_tokens, completion_tokens, total_tokens, estimated, stream,"    \
    " latency_ms, ttft_ms, bytes_in, bytes_out"


ngx_int_t
ngx_nexus_usage_init_statements(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statement(cf, "nexus_usage_copy",
            "COPY usage_events (" NGX_NEXUS_USAGE_COLUMNS ", created_at)"
            " FROM STDIN",
            NGX_NEXUS_PG_COPY, &ngx_nexus_usage_copy_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * The same rows, for a batch that may have landed: through a
     * temporary table of the session (its rows gone at commit), the
     * statements one implicit transaction
     */
    if (ngx_nexus_pg_statement(cf, "nexus_usage_copy_again",
            "DO $$BEGIN IF to_regclass('pg_temp.nexus_usage_in') IS NULL"
            " THEN CREATE TEMP TABLE nexus_usage_in"
            " (LIKE usage_events) ON COMMIT DELETE ROWS; END IF; END$$;"
            " COPY nexus_usage_in (" NGX_NEXUS_USAGE_COLUMNS ", created_at)"
            " FROM STDIN;"
            " INSERT INTO usage_events (" NGX_NEXUS_USAGE_COLUMNS
            ", created_at) SELECT " NGX_NEXUS_USAGE_COLUMNS ", created_at"
            " FROM nexus_usage_in ON CONFLICT DO NOTHING",
            NGX_NEXUS_PG_COPY, &ngx_nexus_usage_again_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_pg_statement(cf, "nexus_usage_partitions",
               "SELECT nexus_usage_partitions("
               NGX_NEXUS_USAGE_PARTS_AHEAD ")",
               0, &ngx_nexus_usage_parts_stmt);
}


char *
ngx_nexus_usage_init_main_conf(ngx_conf_t *cf, ngx_nexus_main_conf_t *nmcf)
{
    ngx_conf_init_msec_value(nmcf->usage_flush, 1000);
    ngx_conf_init_value(nmcf->usage_batch, 32);
    ngx_conf_init_value(nmcf->usage_queue, 10000);

    if (nmcf->usage_flush == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_usage_flush\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (nmcf->usage_batch < 1
        || nmcf->usage_batch > NGX_NEXUS_USAGE_BATCH_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_usage_batch\" must be from 1 to %d",
                           NGX_NEXUS_USAGE_BATCH_MAX);
        return NGX_CONF_ERROR;
    }

    /* a full queue always has a waiting event to drop, besides a batch */
    if (nmcf->usage_queue < 2 * nmcf->usage_batch
        || nmcf->usage_queue > NGX_NEXUS_USAGE_QUEUE_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_usage_queue\" must be from twice "
                           "\"nexus_usage_batch\" (%i) to %d",
                           2 * nmcf->usage_batch, NGX_NEXUS_USAGE_QUEUE_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_nexus_usage_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    ngx_queue_init(&ngx_nexus_usage_waiting);
    ngx_queue_init(&ngx_nexus_usage_sent);
    ngx_nexus_usage_nwaiting = 0;
    ngx_nexus_usage_nsent = 0;
    ngx_nexus_usage_ndropped = 0;
    ngx_nexus_usage_unlogged = 0;
    ngx_nexus_usage_failing = 0;
    ngx_nexus_usage_exit_tries = 0;

    if (nmcf->pg == NULL) {
        ngx_nexus_usage_on = 0;
        return NGX_OK;
    }

    ngx_nexus_usage_on = 1;
    ngx_nexus_usage_interval = nmcf->usage_flush;
    ngx_nexus_usage_batch = nmcf->usage_batch;
    ngx_nexus_usage_cap = nmcf->usage_queue;

    ngx_memzero(&ngx_nexus_usage_ev, sizeof(ngx_event_t));
    ngx_nexus_usage_ev.handler = ngx_nexus_usage_timer;
    ngx_nexus_usage_ev.log = cycle->log;
    ngx_nexus_usage_ev.data = &ngx_nexus_usage_conn;
    ngx_nexus_usage_ev.cancelable = 1;

    ngx_nexus_usage_watch(cycle);

    if (ngx_worker == 0) {
        /* one worker per node is enough; the nodes take turns in SQL */
        ngx_memzero(&ngx_nexus_usage_parts_ev, sizeof(ngx_event_t));
        ngx_nexus_usage_parts_ev.handler = ngx_nexus_usage_parts_timer;
        ngx_nexus_usage_parts_ev.log = cycle->log;
        ngx_nexus_usage_parts_ev.data = &ngx_nexus_usage_conn;
        ngx_nexus_usage_parts_ev.cancelable = 1;

        ngx_add_timer(&ngx_nexus_usage_parts_ev, 1);
    }

    return NGX_OK;
}


/*
 * nginx starts a graceful shutdown by closing the idle connections of each
 * worker (ngx_close_idle_connections()), the way it tells keepalive
 * connections.  An idle connection on /dev/null, never read from and
 * never in the event loop, brings that notice here.  Without it, an
 * exiting worker would write its events at its next tick only.
 */

static void
ngx_nexus_usage_watch(ngx_cycle_t *cycle)
{
    ngx_fd_t           fd;
    ngx_connection_t  *c;

    ngx_nexus_usage_idle = NULL;

    fd = ngx_open_file("/dev/null", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "nexus usage: cannot open /dev/null, exiting "
                      "workers write their events at their next tick");
        return;
    }

    c = ngx_get_connection((ngx_socket_t) fd, cycle->log);
    if (c == NULL) {
        (void) ngx_close_file(fd);
        return;
    }

    c->idle = 1;
    c->read->handler = ngx_nexus_usage_shutdown;

    ngx_nexus_usage_idle = c;
}


static void
ngx_nexus_usage_shutdown(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    /* no socket left open behind the exiting worker */
    ngx_close_connection(c);
    ngx_nexus_usage_idle = NULL;

    if (!ngx_nexus_usage_on) {
        return;
    }

    if (ngx_nexus_usage_ev.timer_set) {
        ngx_del_timer(&ngx_nexus_usage_ev);
    }

    ngx_nexus_usage_flush();
    ngx_nexus_usage_arm();
}


/*
 * The worker is exiting for good.  After a graceful shutdown nothing is
 * left here; after a fast one (SIGTERM, nginx -s stop) what is left is
 * lost, and said so.  A batch in flight may or may not have landed.
 */

void
ngx_nexus_usage_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_nexus_usage_idle) {
        ngx_close_connection(ngx_nexus_usage_idle);
        ngx_nexus_usage_idle = NULL;
    }

    if (!ngx_nexus_usage_on) {
        return;
    }

    ngx_nexus_usage_give_up(&ngx_nexus_usage_sent, &ngx_nexus_usage_nsent,
                            "the worker exited with them in flight");
    ngx_nexus_usage_give_up(&ngx_nexus_usage_waiting,
                            &ngx_nexus_usage_nwaiting,
                            "the worker exited before writing them");

    ngx_nexus_usage_on = 0;
}


ngx_uint_t
ngx_nexus_usage_dropped(void)
{
    return ngx_nexus_usage_ndropped;
}


ngx_uint_t
ngx_nexus_usage_queued(void)
{
    return ngx_nexus_usage_nwaiting + ngx_nexus_usage_nsent;
}


void
ngx_nexus_usage_emit(const ngx_nexus_usage_t *ev)
{
    u_char                 *p;
    size_t                  len;
    int64_t                 ms;
    ngx_tm_t                tm;
    ngx_time_t             *tp;
    ngx_queue_t            *q;
    ngx_nexus_usage_row_t  *row;
    u_char                  buf[NGX_NEXUS_USAGE_ROW_MAX];

    if (!ngx_nexus_usage_on) {
        return;
    }

    ms = ev->created_ms;

    if (ms <= 0) {
        tp = ngx_timeofday();
        ms = (int64_t) tp->sec * 1000 + tp->msec;
    }

    /* the columns of NGX_NEXUS_USAGE_COLUMNS, then created_at */

    p = ngx_nexus_usage_str(buf, &ev->request_id);
    p = ngx_nexus_usage_id(p, ev->tenant_id);
    p = ngx_nexus_usage_id(p, ev->key_id);
    p = ngx_nexus_usage_str(p, &ev->key_prefix);
    p = ngx_nexus_usage_str(p, &ev->endpoint);
    p = ngx_nexus_usage_str(p, &ev->model_requested);
    p = ngx_nexus_usage_str(p, &ev->model_served);
    p = ngx_nexus_usage_str(p, &ev->provider);

    /* integer columns: a wild value must not fail the whole batch */
    p = ngx_sprintf(p, "%ui\t%ui\t",
                    ngx_min(ev->attempts, 1000), ngx_min(ev->status, 999));

    p = ngx_nexus_usage_str(p, &ev->outcome);
    p = ngx_nexus_usage_str(p, &ev->error_code);

    p = ngx_sprintf(p, "%L\t%L\t%L\t%c\t%c\t%M\t",
                    ev->prompt_tokens, ev->completion_tokens,
                    ev->total_tokens, ev->estimated ? 't' : 'f',
                    ev->stream ? 't' : 'f', ev->latency_ms);

    if (ev->ttft_ms) {
        p = ngx_sprintf(p, "%M\t", ev->ttft_ms);

    } else {
        p = ngx_cpymem(p, "\\N\t", 3);
    }

    /* the second's text is made once a second, not once an event */
    if (ms / 1000 != ngx_nexus_usage_ts_sec) {
        ngx_nexus_usage_ts_sec = ms / 1000;
        ngx_gmtime((time_t) ngx_nexus_usage_ts_sec, &tm);
        (void) ngx_sprintf(ngx_nexus_usage_ts, "%4d-%02d-%02d %02d:%02d:%02d",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
    }

    p = ngx_sprintf(p, "%O\t%O\t", ev->bytes_in, ev->bytes_out);
    p = ngx_cpymem(p, ngx_nexus_usage_ts, sizeof(ngx_nexus_usage_ts) - 1);
    *p++ = '.';
    *p++ = (u_char) ('0' + ms % 1000 / 100);
    *p++ = (u_char) ('0' + ms % 100 / 10);
    *p++ = (u_char) ('0' + ms % 10);
    p = ngx_cpymem(p, "+00\n", sizeof("+00\n") - 1);

    len = p - buf;

    row = ngx_nexus_usage_row_alloc(len);
    if (row == NULL) {
        ngx_nexus_usage_ndropped++;
        ngx_nexus_usage_unlogged++;
        return;
    }

    row->len = len;
    ngx_memcpy(row->data, buf, len);

    if (ngx_nexus_usage_nwaiting + ngx_nexus_usage_nsent
        >= ngx_nexus_usage_cap
        && ngx_nexus_usage_nwaiting)
    {
        /* the oldest waiting event makes room; the batch in flight stays */
        q = ngx_queue_head(&ngx_nexus_usage_waiting);
        ngx_queue_remove(q);
        ngx_nexus_usage_nwaiting--;
        ngx_nexus_usage_row_free(ngx_queue_data(q, ngx_nexus_usage_row_t,
                                                queue));

        ngx_nexus_usage_ndropped++;
        ngx_nexus_usage_unlogged++;
    }

    ngx_queue_insert_tail(&ngx_nexus_usage_waiting, &row->queue);
    ngx_nexus_usage_nwaiting++;

    ngx_nexus_usage_arm();

    /*
     * while PostgreSQL fails, only the timer tries again; an exiting
     * worker writes what its last requests leave as soon as it can
     */
    if ((ngx_nexus_usage_nwaiting >= ngx_nexus_usage_batch || ngx_exiting)
        && !ngx_nexus_usage_failing)
    {
        ngx_nexus_usage_flush();
    }
}


static ngx_nexus_usage_row_t *
ngx_nexus_usage_row_alloc(size_t len)
{
    size_t                    size, csize;
    ngx_nexus_usage_row_t    *row;
    ngx_nexus_usage_chunk_t  *c;

    size = ngx_align(offsetof(ngx_nexus_usage_row_t, data) + len,
                     sizeof(void *));

    c = ngx_nexus_usage_chunk;

    if (c == NULL || (size_t) (c->end - c->pos) < size) {

        if (c != NULL && c->live == 0) {
            /* an empty chunk: cut from its start again, or let it go */
            c->pos = (u_char *) (c + 1);

            if ((size_t) (c->end - c->pos) < size) {
                ngx_free(c);
                c = NULL;
            }

        } else {
            /* its rows free it with the last of them */
            c = NULL;
        }

        if (c == NULL) {
            csize = ngx_max(NGX_NEXUS_USAGE_CHUNK, size);

            c = ngx_alloc(sizeof(ngx_nexus_usage_chunk_t) + csize,
                          ngx_cycle->log);
            if (c == NULL) {
                ngx_nexus_usage_chunk = NULL;
                return NULL;
            }

            c->live = 0;
            c->pos = (u_char *) (c + 1);
            c->end = c->pos + csize;
        }

        ngx_nexus_usage_chunk = c;
    }

    row = (ngx_nexus_usage_row_t *) c->pos;
    c->pos += size;
    c->live++;

    row->chunk = c;

    return row;
}


static void
ngx_nexus_usage_row_free(ngx_nexus_usage_row_t *row)
{
    ngx_nexus_usage_chunk_t  *c;

    c = row->chunk;

    if (--c->live > 0) {
        return;
    }

    if (c == ngx_nexus_usage_chunk) {
        c->pos = (u_char *) (c + 1);
        return;
    }

    ngx_free(c);
}


/*
 * The timer runs only while events wait: the first event of a quiet worker
 * arms it, and a failed batch in flight arms it again.
 */

static void
ngx_nexus_usage_timer(ngx_event_t *ev)
{
    ngx_nexus_usage_log_drops();
    ngx_nexus_usage_flush();
    ngx_nexus_usage_arm();
}


/*
 * The timer is set while events wait, and keeps a gracefully exiting
 * worker alive exactly as long.
 */

static void
ngx_nexus_usage_arm(void)
{
    ngx_nexus_usage_ev.cancelable = (ngx_nexus_usage_nwaiting == 0);

    if (ngx_nexus_usage_nwaiting && !ngx_nexus_usage_ev.timer_set) {
        ngx_add_timer(&ngx_nexus_usage_ev,
                      ngx_exiting ? ngx_min(ngx_nexus_usage_interval,
                                            NGX_NEXUS_USAGE_EXIT_RETRY)
                                  : ngx_nexus_usage_interval);
    }
}


static void
ngx_nexus_usage_flush(void)
{
    u_char                 *p, *buf;
    size_t                  size;
    ngx_uint_t              i, n;
    ngx_queue_t            *q;
    ngx_nexus_pg_query_t   *pq;
    ngx_nexus_usage_row_t  *row;

    if (ngx_nexus_usage_nwaiting == 0 || ngx_nexus_usage_nsent) {
        return;
    }

    /* all that waits: under load, the batch grows with it */
    n = ngx_min(ngx_nexus_usage_nwaiting, NGX_NEXUS_USAGE_SEND_MAX);

    size = 0;
    q = ngx_queue_head(&ngx_nexus_usage_waiting);

    for (i = 0; i < n; i++) {
        row = ngx_queue_data(q, ngx_nexus_usage_row_t, queue);
        size += row->len;
        q = ngx_queue_next(q);
    }

    pq = ngx_nexus_pg_query(ngx_nexus_usage_again ? ngx_nexus_usage_again_stmt
                                                  : ngx_nexus_usage_copy_stmt,
                            2 * size);
    if (pq == NULL) {
        return;
    }

    /* the rows, one after the other, at the end of the query's memory */

    buf = pq->end - size;
    p = buf;

    q = ngx_queue_head(&ngx_nexus_usage_waiting);

    for (i = 0; i < n; i++) {
        row = ngx_queue_data(q, ngx_nexus_usage_row_t, queue);
        p = ngx_cpymem(p, row->data, row->len);
        q = ngx_queue_next(q);
    }

    if (ngx_nexus_pg_param(pq, buf, p - buf) != NGX_OK) {
        ngx_nexus_pg_free(pq);
        return;
    }

    pq->handler = ngx_nexus_usage_done;

    if (ngx_nexus_pg_send(pq) != NGX_OK) {
        /* PostgreSQL is known to be unreachable now */
        if (!ngx_nexus_usage_failing) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "nexus usage: PostgreSQL is unavailable, "
                          "%ui events wait", ngx_nexus_usage_nwaiting);
        }

        ngx_nexus_usage_retry();
        return;
    }

    for (i = 0; i < n; i++) {
        q = ngx_queue_head(&ngx_nexus_usage_waiting);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ngx_nexus_usage_sent, q);
    }

    ngx_nexus_usage_nwaiting -= n;
    ngx_nexus_usage_nsent = n;

    ngx_nexus_usage_arm();
}


static void
ngx_nexus_usage_done(ngx_nexus_pg_query_t *pq, PGresult *res, ngx_int_t rc)
{
    ngx_queue_t  *q;
    const char   *state;

    if (rc == NGX_OK) {
        ngx_nexus_usage_give_up(&ngx_nexus_usage_sent,
                                &ngx_nexus_usage_nsent, NULL);

        ngx_nexus_usage_again = 0;

        if (ngx_nexus_usage_failing) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "nexus usage: events are written again");
            ngx_nexus_usage_failing = 0;
        }

        ngx_nexus_usage_exit_tries = 0;

        if (ngx_nexus_usage_nwaiting >= ngx_nexus_usage_batch
            || (ngx_exiting && ngx_nexus_usage_nwaiting))
        {
            ngx_nexus_usage_flush();
        }

        return;
    }

    state = ngx_nexus_pg_sqlstate(res);

    if (state[0] == '2' && state[1] == '2') {
        /*
         * a data exception: the same rows would fail forever, and hold
         * up every event behind them
         */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus usage: PostgreSQL refused a batch of %ui "
                      "events, they are dropped: %s",
                      ngx_nexus_usage_nsent, PQresultErrorMessage(res));

        ngx_nexus_usage_give_up(&ngx_nexus_usage_sent,
                                &ngx_nexus_usage_nsent, "");
        ngx_nexus_usage_flush();
        return;
    }

    if (!ngx_nexus_usage_failing) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus usage: writing %ui events failed, "
                      "they will be sent again%s%s",
                      ngx_nexus_usage_nsent, res ? ": " : "",
                      res ? PQresultErrorMessage(res) : "");
    }

    /*
     * A batch that failed may have landed (its answer lost), or a part of
     * it before (a unique violation): until one is written, batches go
     * the way that skips rows already there.
     */
    ngx_nexus_usage_again = 1;

    /* back to the head of the queue, in their order */

    while (!ngx_queue_empty(&ngx_nexus_usage_sent)) {
        q = ngx_queue_last(&ngx_nexus_usage_sent);
        ngx_queue_remove(q);
        ngx_queue_insert_head(&ngx_nexus_usage_waiting, q);
    }

    ngx_nexus_usage_nwaiting += ngx_nexus_usage_nsent;
    ngx_nexus_usage_nsent = 0;

    ngx_nexus_usage_retry();
}


/* a batch could not be written: try again at the next tick, if any */

static void
ngx_nexus_usage_retry(void)
{
    ngx_nexus_usage_failing = 1;

    if (ngx_exiting) {
        /*
         * an exiting worker's pool does not reconnect: without a live
         * connection, or after a few tries, nothing will change
         */
        if (ngx_nexus_pg_nconnected() == 0
            || ++ngx_nexus_usage_exit_tries >= NGX_NEXUS_USAGE_EXIT_TRIES)
        {
            ngx_nexus_usage_give_up(&ngx_nexus_usage_waiting,
                                    &ngx_nexus_usage_nwaiting,
                                    "PostgreSQL is unavailable and the "
                                    "worker is exiting");
            return;
        }
    }

    ngx_nexus_usage_arm();
}


/*
 * Frees the rows of a queue.  why == NULL: they were written; otherwise
 * they are lost and counted, and why is logged unless it is empty.
 */

static void
ngx_nexus_usage_give_up(ngx_queue_t *queue, ngx_uint_t *n, const char *why)
{
    ngx_queue_t  *q;

    if (why && *n) {
        ngx_nexus_usage_ndropped += *n;

        if (why[0]) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "nexus usage: %ui events lost: %s", *n, why);
        }
    }

    while (!ngx_queue_empty(queue)) {
        q = ngx_queue_head(queue);
        ngx_queue_remove(q);
        ngx_nexus_usage_row_free(ngx_queue_data(q, ngx_nexus_usage_row_t,
                                                queue));
    }

    *n = 0;
}


/* once per flush interval at most, however many were dropped */

static void
ngx_nexus_usage_log_drops(void)
{
    if (ngx_nexus_usage_unlogged == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "nexus usage: %ui events dropped, the queue of %ui is "
                  "full (%ui dropped by this worker in all)",
                  ngx_nexus_usage_unlogged, ngx_nexus_usage_cap,
                  ngx_nexus_usage_ndropped);

    ngx_nexus_usage_unlogged = 0;
}


/*
 * A text field and its tab, \N for an empty string.  At most
 * NGX_NEXUS_USAGE_STR_MAX bytes, cut before a character rather than inside
 * one; anything that is not valid UTF-8 becomes U+FFFD, so that PostgreSQL
 * never refuses the batch for it.
 */

static u_char *
ngx_nexus_usage_str(u_char *p, const ngx_str_t *s)
{
    size_t  len;

    if (s->len == 0) {
        return ngx_cpymem(p, "\\N\t", 3);
    }

    len = s->len;

    if (len > NGX_NEXUS_USAGE_STR_MAX) {
        len = NGX_NEXUS_USAGE_STR_MAX;

        while (len && (s->data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    p += nx_copy_escape((char *) p, (const char *) s->data, len);
    *p++ = '\t';

    return p;
}


/* ids start at 1: 0 is "none", \N */

static u_char *
ngx_nexus_usage_id(u_char *p, int64_t id)
{
    if (id <= 0) {
        return ngx_cpymem(p, "\\N\t", 3);
    }

    return ngx_sprintf(p, "%L\t", id);
}


static void
ngx_nexus_usage_parts_timer(ngx_event_t *ev)
{
    ngx_nexus_pg_query_t  *pq;

    if (ngx_exiting) {
        return;
    }

    pq = ngx_nexus_pg_query(ngx_nexus_usage_parts_stmt, 0);
    if (pq == NULL) {
        ngx_add_timer(ev, NGX_NEXUS_USAGE_PARTS_RETRY);
        return;
    }

    pq->handler = ngx_nexus_usage_parts_done;

    if (ngx_nexus_pg_send(pq) != NGX_OK) {
        ngx_add_timer(ev, NGX_NEXUS_USAGE_PARTS_RETRY);
    }
}


static void
ngx_nexus_usage_parts_done(ngx_nexus_pg_query_t *pq, PGresult *res,
    ngx_int_t rc)
{
    ngx_msec_t  next;

    next = NGX_NEXUS_USAGE_PARTS_EVERY;

    switch (rc) {

    case NGX_OK:
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
            && ngx_strcmp(PQgetvalue(res, 0, 0), "0") != 0)
        {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "nexus usage: %s daily partitions created",
                          PQgetvalue(res, 0, 0));
        }
        break;

    case NGX_ERROR:
        /* the schema is not there, or a lock was held: not soon again */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus usage: cannot create the daily partitions "
                      "ahead: %s", PQresultErrorMessage(res));
        break;

    default:
        /* unreachable: the pool has said so already */
        next = NGX_NEXUS_USAGE_PARTS_RETRY;
        break;
    }

    if (!ngx_exiting && ngx_nexus_usage_on
        && !ngx_nexus_usage_parts_ev.timer_set)
    {
        ngx_add_timer(&ngx_nexus_usage_parts_ev, next);
    }
}
