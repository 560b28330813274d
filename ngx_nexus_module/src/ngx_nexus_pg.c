
/*
 * Copyright (C) Nexus authors
 *
 * Non-blocking PostgreSQL inside an nginx worker.
 *
 * Each worker owns a pool of libpq connections (nexus_postgres pool=N) and
 * one extra connection that LISTENs for key invalidations.  libpq owns the
 * sockets; nginx only watches them: every socket is wrapped in an nginx
 * connection with level-triggered events, and every wait (connect, query,
 * queue, backoff) has a timer.  A query whose request goes away is
 * detached, never freed under the connection's feet: its result is read
 * and dropped.  Statements are prepared lazily on each connection.
 */


#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"


#define NGX_NEXUS_PG_BACKOFF_MIN    100
#define NGX_NEXUS_PG_BACKOFF_MAX    2000


typedef enum {
    NGX_NEXUS_PG_DOWN = 0,
    NGX_NEXUS_PG_BACKOFF,
    NGX_NEXUS_PG_CONNECTING,
    NGX_NEXUS_PG_LISTENING,
    NGX_NEXUS_PG_IDLE,
    NGX_NEXUS_PG_PREPARING,
    NGX_NEXUS_PG_BUSY
} ngx_nexus_pg_state_e;


typedef struct {
    PGconn                     *pgconn;
    ngx_connection_t           *c;
    ngx_nexus_pg_state_e        state;
    ngx_event_t                 timer;
    ngx_msec_t                  backoff;
    /* a bit per statement: prepared on this connection */
    uint64_t                    prepared[NGX_NEXUS_PG_MAX_STMTS / 64];
    ngx_nexus_pg_query_t       *q;
    PGresult                   *res;
    ngx_log_t                  *log;
    unsigned                    listener:1;
    unsigned                    writing:1;
} ngx_nexus_pg_conn_t;


typedef struct {
    const char                 *name;
    const char                 *sql;
    int                         nparams;
} ngx_nexus_pg_stmt_t;


static void ngx_nexus_pg_connect(ngx_nexus_pg_conn_t *pc);
static ngx_int_t ngx_nexus_pg_wrap(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_unwrap(ngx_nexus_pg_conn_t *pc, ngx_uint_t closed);
static void ngx_nexus_pg_close(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_fail(ngx_nexus_pg_conn_t *pc, const char *what);
static void ngx_nexus_pg_want_write(ngx_nexus_pg_conn_t *pc,
    ngx_uint_t on);
static void ngx_nexus_pg_event(ngx_event_t *ev);
static void ngx_nexus_pg_poll(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_flush(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_read(ngx_nexus_pg_conn_t *pc);
static ngx_int_t ngx_nexus_pg_copy_data(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_complete(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_connected(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_timer(ngx_event_t *ev);
static void ngx_nexus_pg_queue_timer(ngx_event_t *ev);
static void ngx_nexus_pg_exec(ngx_nexus_pg_conn_t *pc,
    ngx_nexus_pg_query_t *q);
static void ngx_nexus_pg_send_prepared(ngx_nexus_pg_conn_t *pc);
static void ngx_nexus_pg_deliver(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_pg_dispatch(void);
static void ngx_nexus_pg_dispatch_handler(ngx_event_t *ev);
static void ngx_nexus_pg_fail_waiting(void);
static void ngx_nexus_pg_arm(ngx_nexus_pg_conn_t *pc, ngx_msec_t timeout,
    ngx_uint_t cancelable);
static void ngx_nexus_pg_log_error(ngx_nexus_pg_conn_t *pc,
    ngx_uint_t level, const char *what);


#if (NGX_NEXUS_PG_MAX_STMTS % 64)
#error "NGX_NEXUS_PG_MAX_STMTS must be a multiple of 64"
#endif

static ngx_nexus_pg_stmt_t      ngx_nexus_pg_stmts[NGX_NEXUS_PG_MAX_STMTS];
static ngx_uint_t               ngx_nexus_pg_nstmts;

static ngx_nexus_pg_conf_t     *ngx_nexus_pg_cf;
static ngx_nexus_pg_conn_t     *ngx_nexus_pg_conns;
static ngx_uint_t               ngx_nexus_pg_nconns;
static ngx_nexus_pg_conn_t      ngx_nexus_pg_listener;
static ngx_queue_t              ngx_nexus_pg_waiting;
static ngx_uint_t               ngx_nexus_pg_nwaiting;
static ngx_cycle_t             *ngx_nexus_pg_cycle;
static ngx_event_t              ngx_nexus_pg_dispatch_ev;

static ngx_nexus_pg_notify_pt     ngx_nexus_pg_on_notify;
static ngx_nexus_pg_listen_pt     ngx_nexus_pg_on_listen;


/*
 * Statements are found by name, so registering them again on every
 * configuration reload yields the same indexes.
 */

ngx_int_t
ngx_nexus_pg_statements(ngx_conf_t *cf, const ngx_nexus_pg_sql_t *sql,
    ngx_uint_t n, ngx_uint_t *ids)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (ngx_nexus_pg_statement(cf, sql[i].name, sql[i].sql,
                                   sql[i].nparams, &ids[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_nexus_pg_statement(ngx_conf_t *cf, const char *name, const char *sql,
    int nparams, ngx_uint_t *index)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_nexus_pg_nstmts; i++) {
        if (ngx_strcmp(ngx_nexus_pg_stmts[i].name, name) == 0) {
            ngx_nexus_pg_stmts[i].sql = sql;
            ngx_nexus_pg_stmts[i].nparams = nparams;
            *index = i;
            return NGX_OK;
        }
    }

    if (ngx_nexus_pg_nstmts == NGX_NEXUS_PG_MAX_STMTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many nexus PostgreSQL statements");
        return NGX_ERROR;
    }

    ngx_nexus_pg_stmts[i].name = name;
    ngx_nexus_pg_stmts[i].sql = sql;
    ngx_nexus_pg_stmts[i].nparams = nparams;
    *index = ngx_nexus_pg_nstmts++;

    return NGX_OK;
}


void
ngx_nexus_pg_listen_handler(ngx_nexus_pg_notify_pt notify,
    ngx_nexus_pg_listen_pt listen)
{
    ngx_nexus_pg_on_notify = notify;
    ngx_nexus_pg_on_listen = listen;
}


/*
 * nexus_postgres "conninfo" [pool=N] [queue=N] [connect_timeout=T]
 *                [query_timeout=T];
 *
 * A host name is resolved here, at configuration time, and passed to libpq
 * as hostaddr=, so that libpq never resolves names inside a worker.
 */

char *
ngx_nexus_pg_conf(ngx_conf_t *cf, ngx_nexus_pg_conf_t *pgcf,
    ngx_str_t *value, ngx_uint_t n)
{
    char                *errmsg, *ci;
    u_char              *p;
    size_t               len;
    ngx_int_t            num;
    ngx_str_t            s, host, hostaddr;
    ngx_url_t            u;
    ngx_uint_t           i, has_gss;
    PQconninfoOption    *opts, *o;

    ci = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (ci == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn((u_char *) ci, value[1].data, value[1].len + 1);

    errmsg = NULL;
    opts = PQconninfoParse(ci, &errmsg);
    if (opts == NULL) {
        len = errmsg ? ngx_strlen(errmsg) : 0;

        while (len && (errmsg[len - 1] == '\n' || errmsg[len - 1] == ' ')) {
            len--;
        }

        /* libpq's message names the bad keyword, never a password value */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PostgreSQL connection string: %*s",
                           len, errmsg ? errmsg : "");
        if (errmsg) {
            PQfreemem(errmsg);
        }
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&host);
    ngx_str_null(&hostaddr);
    has_gss = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host.data = (u_char *) o->val;
            host.len = ngx_strlen(o->val);

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr.data = (u_char *) o->val;
            hostaddr.len = ngx_strlen(o->val);

        } else if (ngx_strcmp(o->keyword, "gssencmode") == 0) {
            has_gss = 1;
        }
    }

    len = value[1].len + sizeof(" hostaddr=") - 1 + NGX_SOCKADDR_STRLEN
          + sizeof(" gssencmode=disable");

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    pgcf->conninfo.data = p;
    p = ngx_cpymem(p, value[1].data, value[1].len);

    if (hostaddr.len == 0 && host.len && ngx_strchr(host.data, ',')) {
        /* libpq would resolve the others inside a worker */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "PostgreSQL host lists are not supported, "
                           "use one host or hostaddr=");
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    if (hostaddr.len == 0 && host.len && host.data[0] != '/') {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = host;
        u.default_port = 5432;
        u.no_port = 1;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cannot resolve PostgreSQL host \"%V\"%s%s",
                               &host, u.err ? ": " : "",
                               u.err ? u.err : "");
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(p, " hostaddr=", sizeof(" hostaddr=") - 1);
        p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                           NGX_SOCKADDR_STRLEN, 0);
    }

    if (!has_gss) {
        /* GSSAPI negotiation may read credential caches: not here */
        p = ngx_cpymem(p, " gssencmode=disable",
                       sizeof(" gssencmode=disable") - 1);
    }

    *p++ = '\0';
    pgcf->conninfo.len = p - pgcf->conninfo.data - 1;

    PQconninfoFree(opts);

    for (i = 2; i < n; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            num = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (num <= 0 || num > 256) {
                goto invalid;
            }
            pgcf->size = num;
            continue;
        }

        if (ngx_strncmp(value[i].data, "queue=", 6) == 0) {
            num = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (num <= 0 || num > 65536) {
                goto invalid;
            }
            pgcf->queue = num;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            pgcf->connect_timeout = ngx_parse_time(&s, 0);
            if (pgcf->connect_timeout == (ngx_msec_t) NGX_ERROR
                || pgcf->connect_timeout == 0)
            {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "query_timeout=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;
            pgcf->query_timeout = ngx_parse_time(&s, 0);
            if (pgcf->query_timeout == (ngx_msec_t) NGX_ERROR
                || pgcf->query_timeout == 0)
            {
                goto invalid;
            }
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_nexus_pg_init_process(ngx_cycle_t *cycle, ngx_nexus_pg_conf_t *pgcf)
{
    ngx_uint_t            i;
    ngx_nexus_pg_conn_t  *pc;

    ngx_nexus_pg_cf = pgcf;
    ngx_nexus_pg_cycle = cycle;
    ngx_queue_init(&ngx_nexus_pg_waiting);
    ngx_nexus_pg_nwaiting = 0;

    ngx_memzero(&ngx_nexus_pg_dispatch_ev, sizeof(ngx_event_t));
    ngx_nexus_pg_dispatch_ev.handler = ngx_nexus_pg_dispatch_handler;
    ngx_nexus_pg_dispatch_ev.log = cycle->log;

    if (pgcf == NULL) {
        return NGX_OK;
    }

    ngx_nexus_pg_conns = ngx_pcalloc(cycle->pool,
                                     pgcf->size * sizeof(ngx_nexus_pg_conn_t));
    if (ngx_nexus_pg_conns == NULL) {
        return NGX_ERROR;
    }

    ngx_nexus_pg_nconns = pgcf->size;

    for (i = 0; i <= ngx_nexus_pg_nconns; i++) {
        pc = (i < ngx_nexus_pg_nconns) ? &ngx_nexus_pg_conns[i]
                                       : &ngx_nexus_pg_listener;

        ngx_memzero(pc, sizeof(ngx_nexus_pg_conn_t));

        pc->log = cycle->log;
        pc->backoff = NGX_NEXUS_PG_BACKOFF_MIN;
        pc->listener = (i == ngx_nexus_pg_nconns);
        pc->timer.handler = ngx_nexus_pg_timer;
        pc->timer.data = pc;
        pc->timer.log = cycle->log;
        pc->timer.cancelable = 1;

        ngx_nexus_pg_connect(pc);
    }

    return NGX_OK;
}


void
ngx_nexus_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t             i;
    ngx_queue_t           *qu;
    ngx_nexus_pg_conn_t   *pc;
    ngx_nexus_pg_query_t  *q;

    if (ngx_nexus_pg_cf == NULL) {
        return;
    }

    if (ngx_nexus_pg_dispatch_ev.posted) {
        ngx_delete_posted_event(&ngx_nexus_pg_dispatch_ev);
    }

    while (!ngx_queue_empty(&ngx_nexus_pg_waiting)) {
        qu = ngx_queue_head(&ngx_nexus_pg_waiting);
        q = ngx_queue_data(qu, ngx_nexus_pg_query_t, queue);
        ngx_queue_remove(qu);
        ngx_nexus_pg_free(q);
    }

    for (i = 0; i <= ngx_nexus_pg_nconns; i++) {
        pc = (i < ngx_nexus_pg_nconns) ? &ngx_nexus_pg_conns[i]
                                       : &ngx_nexus_pg_listener;

        if (pc->timer.timer_set) {
            ngx_del_timer(&pc->timer);
        }

        if (pc->q) {
            ngx_nexus_pg_free(pc->q);
            pc->q = NULL;
        }

        if (pc->listener && pc->state == NGX_NEXUS_PG_IDLE
            && ngx_nexus_pg_on_listen)
        {
            ngx_nexus_pg_on_listen(cycle, 0);
        }

        ngx_nexus_pg_close(pc);
        pc->state = NGX_NEXUS_PG_DOWN;
    }

    ngx_nexus_pg_cf = NULL;
}


ngx_nexus_pg_query_t *
ngx_nexus_pg_query(ngx_uint_t stmt, size_t size)
{
    ngx_nexus_pg_query_t  *q;

    q = ngx_alloc(sizeof(ngx_nexus_pg_query_t) + size, ngx_cycle->log);
    if (q == NULL) {
        return NULL;
    }

    ngx_memzero(q, sizeof(ngx_nexus_pg_query_t));

    q->stmt = stmt;
    q->last = (u_char *) q + sizeof(ngx_nexus_pg_query_t);
    q->end = q->last + size;

    return q;
}


static ngx_int_t
ngx_nexus_pg_param_add(ngx_nexus_pg_query_t *q, u_char *data, size_t len,
    int format)
{
    if (q->nparams == NGX_NEXUS_PG_MAX_PARAMS
        || (size_t) (q->end - q->last) < len + 1)
    {
        return NGX_ERROR;
    }

    q->values[q->nparams] = (char *) q->last;
    q->lengths[q->nparams] = (int) len;
    q->formats[q->nparams] = format;
    q->nparams++;

    if (len) {
        /* an empty parameter may come with data == NULL */
        q->last = ngx_cpymem(q->last, data, len);
    }

    *q->last++ = '\0';

    return NGX_OK;
}


/*
 * The answer to a request whose query failed: 503 when PostgreSQL could
 * not be reached (rc NGX_DECLINED), else 500, the database's reason in
 * the error log (what names the query) and never in the answer.
 */

ngx_int_t
ngx_nexus_pg_failed(ngx_http_request_t *r, PGresult *res, ngx_int_t rc,
    const char *what)
{
    if (rc == NGX_DECLINED) {
        return ngx_nexus_pg_unavailable(r);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "nexus %s query failed: %s", what,
                  PQresultErrorMessage(res));

    return ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "INTERNAL_ERROR",
                                "the request could not be completed", NULL);
}


/* the first column of the first row, JSON text, as the answer's data */

ngx_int_t
ngx_nexus_pg_reply(ngx_http_request_t *r, ngx_uint_t status, PGresult *res)
{
    u_char  *buf;
    size_t   len;

    /* the result is freed after the query's handler: copy it */

    len = PQgetlength(res, 0, 0);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(buf, PQgetvalue(res, 0, 0), len);

    return ngx_nexus_send_data(r, status, buf, len);
}


/* SQL NULL: a value not given, which the statement tells from '' */

ngx_int_t
ngx_nexus_pg_param_null(ngx_nexus_pg_query_t *q)
{
    if (q->nparams == NGX_NEXUS_PG_MAX_PARAMS) {
        return NGX_ERROR;
    }

    q->values[q->nparams] = NULL;
    q->lengths[q->nparams] = 0;
    q->formats[q->nparams] = 0;
    q->nparams++;

    return NGX_OK;
}


ngx_int_t
ngx_nexus_pg_param_int(ngx_nexus_pg_query_t *q, int64_t n)
{
    u_char  buf[NGX_INT64_LEN + 1];

    return ngx_nexus_pg_param(q, buf, ngx_sprintf(buf, "%L", n) - buf);
}


ngx_int_t
ngx_nexus_pg_unavailable(ngx_http_request_t *r)
{
    return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "DEPENDENCY_UNAVAILABLE",
                                "the database is unavailable, try again",
                                NULL);
}


ngx_int_t
ngx_nexus_pg_ask(ngx_http_request_t *r, ngx_nexus_pg_query_t *q,
    ngx_uint_t content)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        return ngx_nexus_pg_unavailable(r);
    }

    ctx->pgq = q;
    ngx_nexus_wait(r);

    if (content) {
        r->main->count++;
    }

    return NGX_DONE;
}


/*
 * In the handler of a query asked with ngx_nexus_pg_ask(): the request is
 * no longer waiting on it, and reads nothing more of its client.
 */

ngx_nexus_ctx_t *
ngx_nexus_pg_answered(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    ctx->pgq = NULL;
    r->read_event_handler = ngx_http_block_reading;

    return ctx;
}


ngx_int_t
ngx_nexus_pg_param(ngx_nexus_pg_query_t *q, u_char *data, size_t len)
{
    return ngx_nexus_pg_param_add(q, data, len, 0);
}


ngx_int_t
ngx_nexus_pg_param_binary(ngx_nexus_pg_query_t *q, u_char *data, size_t len)
{
    return ngx_nexus_pg_param_add(q, data, len, 1);
}


void
ngx_nexus_pg_free(ngx_nexus_pg_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_free(q);
}


/*
 * Returns NGX_OK when the handler will be called later (exactly once,
 * unless the query is cancelled), or NGX_DECLINED when PostgreSQL is known
 * to be unreachable right now; the query is then already freed.
 */

ngx_int_t
ngx_nexus_pg_send(ngx_nexus_pg_query_t *q)
{
    ngx_uint_t            i, coming;
    ngx_nexus_pg_conn_t  *pc, *down;

    if (ngx_nexus_pg_cf == NULL) {
        ngx_nexus_pg_free(q);
        return NGX_DECLINED;
    }

    coming = 0;
    down = NULL;

    for (i = 0; i < ngx_nexus_pg_nconns; i++) {
        pc = &ngx_nexus_pg_conns[i];

        switch (pc->state) {

        case NGX_NEXUS_PG_IDLE:
            /*
             * dispatched from a posted event: a handler is never called
             * from inside ngx_nexus_pg_send(), even when sending fails
             */
            ngx_post_event(&ngx_nexus_pg_dispatch_ev, &ngx_posted_events);
            coming = 1;
            break;

        case NGX_NEXUS_PG_CONNECTING:
        case NGX_NEXUS_PG_PREPARING:
        case NGX_NEXUS_PG_BUSY:
            coming = 1;
            break;

        case NGX_NEXUS_PG_DOWN:
            down = pc;
            break;

        default:
            break;
        }
    }

    if (!coming && down) {
        ngx_nexus_pg_connect(down);
        coming = (down->state == NGX_NEXUS_PG_CONNECTING);
    }

    if (!coming || ngx_nexus_pg_nwaiting >= ngx_nexus_pg_cf->queue) {
        ngx_nexus_pg_free(q);
        return NGX_DECLINED;
    }

    q->queued = 1;
    q->timer.handler = ngx_nexus_pg_queue_timer;
    q->timer.data = q;
    q->timer.log = ngx_cycle->log;
    ngx_add_timer(&q->timer, ngx_nexus_pg_cf->query_timeout);

    ngx_queue_insert_tail(&ngx_nexus_pg_waiting, &q->queue);
    ngx_nexus_pg_nwaiting++;

    return NGX_OK;
}


/*
 * The owner of a query is going away.  A queued query is simply dropped;
 * one on the wire stays owned by its connection, which reads and discards
 * the result.
 */

void
ngx_nexus_pg_cancel(ngx_nexus_pg_query_t *q)
{
    if (q->queued) {
        ngx_queue_remove(&q->queue);
        ngx_nexus_pg_nwaiting--;
        ngx_nexus_pg_free(q);
        return;
    }

    q->handler = NULL;
    q->data = NULL;
}


const char *
ngx_nexus_pg_sqlstate(PGresult *res)
{
    const char  *s;

    if (res == NULL) {
        return "";
    }

    s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return s ? s : "";
}


ngx_uint_t
ngx_nexus_pg_nconnected(void)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < ngx_nexus_pg_nconns; i++) {
        if (ngx_nexus_pg_conns[i].state >= NGX_NEXUS_PG_IDLE) {
            n++;
        }
    }

    return n;
}


static void
ngx_nexus_pg_connect(ngx_nexus_pg_conn_t *pc)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        pc->state = NGX_NEXUS_PG_DOWN;
        return;
    }

    ngx_memzero(pc->prepared, sizeof(pc->prepared));
    pc->writing = 0;

    pc->pgconn = PQconnectStart((char *) ngx_nexus_pg_cf->conninfo.data);
    if (pc->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "nexus postgres: out of memory");
        ngx_nexus_pg_fail(pc, NULL);
        return;
    }

    if (PQstatus(pc->pgconn) == CONNECTION_BAD) {
        ngx_nexus_pg_fail(pc, "connect");
        return;
    }

    if (PQsetnonblocking(pc->pgconn, 1) == -1
        || ngx_nexus_pg_wrap(pc) != NGX_OK)
    {
        ngx_nexus_pg_fail(pc, "connect");
        return;
    }

    pc->state = NGX_NEXUS_PG_CONNECTING;
    ngx_nexus_pg_arm(pc, ngx_nexus_pg_cf->connect_timeout, 1);

    /* libpq's first polling state after PQconnectStart is "writing" */
    ngx_nexus_pg_want_write(pc, 1);
}


static ngx_int_t
ngx_nexus_pg_wrap(ngx_nexus_pg_conn_t *pc)
{
    int                fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pgconn);
    if (fd == -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pc->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_nexus_pg_event;
    c->write->handler = ngx_nexus_pg_event;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->log = pc->log;

    pc->c = c;
    pc->writing = 0;

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_nexus_pg_unwrap(pc, 0);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Detach the nginx connection from libpq's socket.  The socket itself is
 * libpq's to close; "closed" says libpq has already closed it (and epoll
 * forgot it with it).
 */

static void
ngx_nexus_pg_unwrap(ngx_nexus_pg_conn_t *pc, ngx_uint_t closed)
{
    ngx_connection_t  *c;

    c = pc->c;
    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, closed ? NGX_CLOSE_EVENT : 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT,
                      closed ? NGX_CLOSE_EVENT : 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;

    pc->c = NULL;
    pc->writing = 0;
}


static void
ngx_nexus_pg_close(ngx_nexus_pg_conn_t *pc)
{
    /* libpq closes the socket itself when it sees the connection drop */
    ngx_nexus_pg_unwrap(pc, pc->c && (pc->pgconn == NULL
                                      || PQsocket(pc->pgconn) != pc->c->fd));

    if (pc->res) {
        PQclear(pc->res);
        pc->res = NULL;
    }

    if (pc->pgconn) {
        PQfinish(pc->pgconn);
        pc->pgconn = NULL;
    }
}


/*
 * A connection failed: close it, fail its query, and try again after an
 * exponential backoff.  Only the first failure of a series is logged at
 * "error" level so that an outage does not flood the log.
 */

static void
ngx_nexus_pg_fail(ngx_nexus_pg_conn_t *pc, const char *what)
{
    ngx_nexus_pg_query_t  *q;

    if (what) {
        ngx_nexus_pg_log_error(pc,
                               pc->backoff == NGX_NEXUS_PG_BACKOFF_MIN
                               ? NGX_LOG_ERR : NGX_LOG_INFO, what);
    }

    q = pc->q;
    pc->q = NULL;

    if (pc->listener && pc->state == NGX_NEXUS_PG_IDLE
        && ngx_nexus_pg_on_listen)
    {
        ngx_nexus_pg_on_listen(ngx_nexus_pg_cycle, 0);
    }

    ngx_nexus_pg_close(pc);

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        pc->state = NGX_NEXUS_PG_DOWN;

    } else {
        pc->state = NGX_NEXUS_PG_BACKOFF;
        ngx_nexus_pg_arm(pc, pc->backoff, 1);
        pc->backoff = ngx_min(pc->backoff * 2, NGX_NEXUS_PG_BACKOFF_MAX);
    }

    if (q) {
        ngx_nexus_pg_deliver(q, NULL, NGX_DECLINED);
    }

    if (!pc->listener) {
        ngx_nexus_pg_fail_waiting();
    }
}


static void
ngx_nexus_pg_log_error(ngx_nexus_pg_conn_t *pc, ngx_uint_t level,
    const char *what)
{
    size_t       len;
    const char  *msg;

    msg = pc->pgconn ? PQerrorMessage(pc->pgconn) : "";
    len = ngx_strlen(msg);

    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) {
        len--;
    }

    ngx_log_error(level, pc->log, 0, "nexus postgres%s %s failed: %*s",
                  pc->listener ? " listener" : "", what, len, msg);
}


/*
 * When no pooled connection is up or on its way, waiting queries cannot be
 * served before their timers: answer them now.
 */

static void
ngx_nexus_pg_fail_waiting(void)
{
    ngx_uint_t             i;
    ngx_queue_t           *qu;
    ngx_nexus_pg_query_t  *q;

    for (i = 0; i < ngx_nexus_pg_nconns; i++) {
        if (ngx_nexus_pg_conns[i].state >= NGX_NEXUS_PG_CONNECTING) {
            return;
        }
    }

    while (!ngx_queue_empty(&ngx_nexus_pg_waiting)) {
        qu = ngx_queue_head(&ngx_nexus_pg_waiting);
        q = ngx_queue_data(qu, ngx_nexus_pg_query_t, queue);

        ngx_queue_remove(qu);
        ngx_nexus_pg_nwaiting--;
        q->queued = 0;

        ngx_nexus_pg_deliver(q, NULL, NGX_DECLINED);
    }
}


static void
ngx_nexus_pg_want_write(ngx_nexus_pg_conn_t *pc, ngx_uint_t on)
{
    ngx_event_t  *wev;

    if (pc->c == NULL) {
        return;
    }

    wev = pc->c->write;

    if (on && !wev->active) {
        if (ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            return;
        }

    } else if (!on && wev->active) {
        (void) ngx_del_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    pc->writing = on;
}


static void
ngx_nexus_pg_arm(ngx_nexus_pg_conn_t *pc, ngx_msec_t timeout,
    ngx_uint_t cancelable)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    /*
     * a timer that guards a request's query keeps a gracefully exiting
     * worker alive until the query is answered; the others must not
     */
    pc->timer.cancelable = cancelable;
    ngx_add_timer(&pc->timer, timeout);
}


static void
ngx_nexus_pg_event(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_nexus_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (c->close) {
        /* nginx asks idle connections to close on graceful shutdown */
        ngx_nexus_pg_fail(pc, NULL);
        return;
    }

    switch (pc->state) {

    case NGX_NEXUS_PG_CONNECTING:
        ngx_nexus_pg_poll(pc);
        return;

    case NGX_NEXUS_PG_LISTENING:
    case NGX_NEXUS_PG_IDLE:
    case NGX_NEXUS_PG_PREPARING:
    case NGX_NEXUS_PG_BUSY:
        if (ev->write) {
            ngx_nexus_pg_flush(pc);

        } else {
            ngx_nexus_pg_read(pc);
        }

        return;

    default:
        /* a stale posted event of a closed connection */
        return;
    }
}


static void
ngx_nexus_pg_poll(ngx_nexus_pg_conn_t *pc)
{
    PostgresPollingStatusType  st;

    for ( ;; ) {
        st = PQconnectPoll(pc->pgconn);

        /*
         * libpq may move to another socket while connecting (another
         * address, or an SSL retry); it has closed the old one already
         */
        if (pc->c == NULL || PQsocket(pc->pgconn) != pc->c->fd) {
            ngx_nexus_pg_unwrap(pc, 1);

            if (st != PGRES_POLLING_FAILED
                && ngx_nexus_pg_wrap(pc) != NGX_OK)
            {
                ngx_nexus_pg_fail(pc, "connect");
                return;
            }
        }

        switch (st) {

        case PGRES_POLLING_READING:
            ngx_nexus_pg_want_write(pc, 0);
            return;

        case PGRES_POLLING_WRITING:
            ngx_nexus_pg_want_write(pc, 1);
            return;

        case PGRES_POLLING_OK:
            ngx_nexus_pg_want_write(pc, 0);
            ngx_nexus_pg_connected(pc);
            return;

        case PGRES_POLLING_FAILED:
            ngx_nexus_pg_fail(pc, "connect");
            return;

        default:
            /* PGRES_POLLING_ACTIVE: poll again */
            continue;
        }
    }
}


static void
ngx_nexus_pg_connected(ngx_nexus_pg_conn_t *pc)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->backoff > NGX_NEXUS_PG_BACKOFF_MIN) {
        ngx_log_error(NGX_LOG_NOTICE, pc->log, 0,
                      "nexus postgres%s connection restored",
                      pc->listener ? " listener" : "");
    }

    pc->backoff = NGX_NEXUS_PG_BACKOFF_MIN;

    if (pc->listener) {
        if (!PQsendQuery(pc->pgconn, "LISTEN nexus_keys")) {
            ngx_nexus_pg_fail(pc, "LISTEN");
            return;
        }

        pc->state = NGX_NEXUS_PG_LISTENING;
        ngx_nexus_pg_arm(pc, ngx_nexus_pg_cf->query_timeout, 1);
        ngx_nexus_pg_flush(pc);
        return;
    }

    pc->state = NGX_NEXUS_PG_IDLE;

    ngx_nexus_pg_dispatch();
}


static void
ngx_nexus_pg_flush(ngx_nexus_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pgconn);

    if (rc == -1) {
        ngx_nexus_pg_fail(pc, "send");
        return;
    }

    ngx_nexus_pg_want_write(pc, rc == 1);
}


static void
ngx_nexus_pg_read(ngx_nexus_pg_conn_t *pc)
{
    PGresult  *res;
    PGnotify  *n;

    if (!PQconsumeInput(pc->pgconn)) {
        ngx_nexus_pg_fail(pc, "read");
        return;
    }

    if (pc->listener) {
        while ((n = PQnotifies(pc->pgconn)) != NULL) {
            if (ngx_nexus_pg_on_notify) {
                ngx_nexus_pg_on_notify(ngx_nexus_pg_cycle, n->relname,
                                       n->extra);
            }
            PQfreemem(n);
        }
    }

    while (!PQisBusy(pc->pgconn)) {
        res = PQgetResult(pc->pgconn);

        if (res == NULL) {
            if (pc->state == NGX_NEXUS_PG_IDLE) {
                return;
            }

            ngx_nexus_pg_complete(pc);

            /* the connection may have a new command in flight now */
            if (pc->state != NGX_NEXUS_PG_PREPARING
                && pc->state != NGX_NEXUS_PG_BUSY)
            {
                return;
            }

            continue;
        }

        if (pc->state == NGX_NEXUS_PG_IDLE) {
            /* nothing asked for this: the connection is not trustworthy */
            PQclear(res);
            ngx_nexus_pg_fail(pc, "unexpected result on idle connection");
            return;
        }

        if (PQresultStatus(res) == PGRES_COPY_IN) {
            PQclear(res);

            if (ngx_nexus_pg_copy_data(pc) != NGX_OK) {
                ngx_nexus_pg_fail(pc, "copy");
                return;
            }

            continue;
        }

        /* keep the first error, else the last result */
        if (pc->res == NULL
            || (PQresultStatus(pc->res) != PGRES_FATAL_ERROR
                && PQresultStatus(res) != PGRES_EMPTY_QUERY))
        {
            if (pc->res) {
                PQclear(pc->res);
            }
            pc->res = res;

        } else {
            PQclear(res);
        }
    }

    if (PQstatus(pc->pgconn) == CONNECTION_BAD) {
        ngx_nexus_pg_fail(pc, "read");
    }
}


/*
 * The server waits for a COPY's rows: the query's first parameter, then
 * the end.  libpq queues them in its output buffer (growing it; in
 * non-blocking mode it fails only without memory) and the flush sends
 * what the socket takes, waiting for it to be writable for the rest.
 */

static ngx_int_t
ngx_nexus_pg_copy_data(ngx_nexus_pg_conn_t *pc)
{
    ngx_nexus_pg_query_t  *q;

    q = pc->q;

    if (pc->state != NGX_NEXUS_PG_BUSY || q == NULL || q->nparams != 1
        || ngx_nexus_pg_stmts[q->stmt].nparams != NGX_NEXUS_PG_COPY)
    {
        /* a COPY nobody asked for: end it with an error */
        (void) PQputCopyEnd(pc->pgconn, "unexpected COPY");
        ngx_nexus_pg_flush(pc);
        return NGX_OK;
    }

    if (PQputCopyData(pc->pgconn, q->values[0], q->lengths[0]) != 1
        || PQputCopyEnd(pc->pgconn, NULL) != 1)
    {
        return NGX_ERROR;
    }

    ngx_nexus_pg_flush(pc);

    return NGX_OK;
}


static ngx_uint_t
ngx_nexus_pg_res_ok(PGresult *res)
{
    ExecStatusType  st;

    if (res == NULL) {
        return 0;
    }

    st = PQresultStatus(res);

    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}


/* the command in flight on pc is complete: its results are in pc->res */

static void
ngx_nexus_pg_complete(ngx_nexus_pg_conn_t *pc)
{
    PGresult              *res;
    ngx_nexus_pg_query_t  *q;

    res = pc->res;
    pc->res = NULL;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    switch (pc->state) {

    case NGX_NEXUS_PG_LISTENING:
        if (!ngx_nexus_pg_res_ok(res)) {
            if (res) {
                PQclear(res);
            }
            ngx_nexus_pg_fail(pc, "LISTEN");
            return;
        }

        PQclear(res);
        pc->state = NGX_NEXUS_PG_IDLE;

        if (ngx_nexus_pg_on_listen) {
            ngx_nexus_pg_on_listen(ngx_nexus_pg_cycle, 1);
        }

        return;

    case NGX_NEXUS_PG_PREPARING:
        q = pc->q;

        if (!ngx_nexus_pg_res_ok(res)) {
            ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                          "nexus postgres: cannot prepare \"%s\": %s",
                          ngx_nexus_pg_stmts[q->stmt].name,
                          res ? PQresultErrorMessage(res) : "no result");

            pc->q = NULL;
            pc->state = NGX_NEXUS_PG_IDLE;
            ngx_nexus_pg_deliver(q, res, NGX_ERROR);
            ngx_nexus_pg_dispatch();
            return;
        }

        PQclear(res);
        pc->prepared[q->stmt / 64] |= (uint64_t) 1 << (q->stmt % 64);
        ngx_nexus_pg_send_prepared(pc);
        return;

    case NGX_NEXUS_PG_BUSY:
        q = pc->q;
        pc->q = NULL;
        pc->state = NGX_NEXUS_PG_IDLE;

        ngx_nexus_pg_deliver(q, res, ngx_nexus_pg_res_ok(res) ? NGX_OK
                                                              : NGX_ERROR);
        ngx_nexus_pg_dispatch();
        return;

    default:
        if (res) {
            PQclear(res);
        }
        return;
    }
}


static void
ngx_nexus_pg_exec(ngx_nexus_pg_conn_t *pc, ngx_nexus_pg_query_t *q)
{
    ngx_nexus_pg_stmt_t  *st;

    pc->q = q;
    q->conn = pc;

    ngx_nexus_pg_arm(pc, ngx_nexus_pg_cf->query_timeout, 0);

    st = &ngx_nexus_pg_stmts[q->stmt];

    if (st->nparams == NGX_NEXUS_PG_COPY) {
        /* COPY cannot be prepared: a simple query, its data on COPY_IN */
        if (!PQsendQuery(pc->pgconn, st->sql)) {
            ngx_nexus_pg_fail(pc, "query");
            return;
        }

        pc->state = NGX_NEXUS_PG_BUSY;
        ngx_nexus_pg_flush(pc);
        return;
    }

    if (pc->prepared[q->stmt / 64] & ((uint64_t) 1 << (q->stmt % 64))) {
        ngx_nexus_pg_send_prepared(pc);
        return;
    }

    if (!PQsendPrepare(pc->pgconn, st->name, st->sql, st->nparams, NULL)) {
        ngx_nexus_pg_fail(pc, "prepare");
        return;
    }

    pc->state = NGX_NEXUS_PG_PREPARING;
    ngx_nexus_pg_flush(pc);
}


static void
ngx_nexus_pg_send_prepared(ngx_nexus_pg_conn_t *pc)
{
    ngx_nexus_pg_query_t  *q;

    q = pc->q;

    if (!PQsendQueryPrepared(pc->pgconn, ngx_nexus_pg_stmts[q->stmt].name,
                             q->nparams, (const char * const *) q->values,
                             q->lengths, q->formats, 0))
    {
        ngx_nexus_pg_fail(pc, "query");
        return;
    }

    pc->state = NGX_NEXUS_PG_BUSY;

    if (!pc->timer.timer_set) {
        ngx_nexus_pg_arm(pc, ngx_nexus_pg_cf->query_timeout, 0);
    }

    ngx_nexus_pg_flush(pc);
}


static void
ngx_nexus_pg_deliver(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    q->conn = NULL;

    if (q->handler) {
        q->handler(q, res, rc);
    }

    if (res) {
        PQclear(res);
    }

    ngx_nexus_pg_free(q);
}


static void
ngx_nexus_pg_dispatch(void)
{
    ngx_uint_t             i;
    ngx_queue_t           *qu;
    ngx_nexus_pg_query_t  *q;

    for (i = 0; i < ngx_nexus_pg_nconns; i++) {

        if (ngx_queue_empty(&ngx_nexus_pg_waiting)) {
            return;
        }

        if (ngx_nexus_pg_conns[i].state != NGX_NEXUS_PG_IDLE) {
            continue;
        }

        qu = ngx_queue_head(&ngx_nexus_pg_waiting);
        q = ngx_queue_data(qu, ngx_nexus_pg_query_t, queue);

        ngx_queue_remove(qu);
        ngx_nexus_pg_nwaiting--;
        q->queued = 0;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        ngx_nexus_pg_exec(&ngx_nexus_pg_conns[i], q);
    }
}


static void
ngx_nexus_pg_dispatch_handler(ngx_event_t *ev)
{
    ngx_nexus_pg_dispatch();
}


static void
ngx_nexus_pg_timer(ngx_event_t *ev)
{
    ngx_nexus_pg_conn_t  *pc;

    pc = ev->data;

    switch (pc->state) {

    case NGX_NEXUS_PG_BACKOFF:
    case NGX_NEXUS_PG_DOWN:
        ngx_nexus_pg_connect(pc);

        if (!pc->listener && pc->state == NGX_NEXUS_PG_BACKOFF) {
            ngx_nexus_pg_fail_waiting();
        }
        return;

    case NGX_NEXUS_PG_CONNECTING:
        ngx_log_error(NGX_LOG_ERR, pc->log, NGX_ETIMEDOUT,
                      "nexus postgres%s connect timed out",
                      pc->listener ? " listener" : "");
        ngx_nexus_pg_fail(pc, NULL);
        return;

    default:
        /*
         * a query timed out; PostgreSQL 15's libpq has no non-blocking
         * cancel, so the connection is dropped, which ends the backend's
         * work at its next interaction with the client
         */
        ngx_log_error(NGX_LOG_ERR, pc->log, NGX_ETIMEDOUT,
                      "nexus postgres%s query timed out",
                      pc->listener ? " listener" : "");
        ngx_nexus_pg_fail(pc, NULL);
        return;
    }
}


static void
ngx_nexus_pg_queue_timer(ngx_event_t *ev)
{
    ngx_nexus_pg_query_t  *q;

    q = ev->data;

    ngx_log_error(NGX_LOG_ERR, ev->log, NGX_ETIMEDOUT,
                  "nexus postgres: no connection became free in time");

    ngx_queue_remove(&q->queue);
    ngx_nexus_pg_nwaiting--;
    q->queued = 0;

    ngx_nexus_pg_deliver(q, NULL, NGX_DECLINED);
}
