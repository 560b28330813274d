
/*
 * Copyright (C) Nexus authors
 *
 * api_keys.last_used_at, written in batches.  Each worker remembers which
 * keys it saw since the last flush and, on a timer, updates them all with
 * one statement.  A failed flush puts its ids back for the next one.  At most
 * one flush interval of "last used" information is lost when a worker
 * exits, which is the price of never writing per request.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"


#define NGX_NEXUS_LAST_USED_MAX     4096


static void ngx_nexus_last_used_timer(ngx_event_t *ev);
static void ngx_nexus_last_used_flush(void);
static void ngx_nexus_last_used_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);


static ngx_uint_t    ngx_nexus_last_used_stmt;
static int64_t       ngx_nexus_last_used_ids[NGX_NEXUS_LAST_USED_MAX];
static ngx_uint_t    ngx_nexus_last_used_n;
static int64_t       ngx_nexus_last_used_sent[NGX_NEXUS_LAST_USED_MAX];
static ngx_uint_t    ngx_nexus_last_used_inflight;   /* ids being sent */
static ngx_event_t   ngx_nexus_last_used_ev;
static ngx_msec_t    ngx_nexus_last_used_interval;

/* timers log their connection's fd at debug level: give them one */
static ngx_connection_t  ngx_nexus_last_used_conn = { .fd = (ngx_socket_t) -1 };


ngx_int_t
ngx_nexus_last_used_init_statements(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statement(cf, "nexus_key_touch",
               "UPDATE api_keys SET last_used_at = now()"
               " WHERE id = ANY($1::bigint[])",
               1, &ngx_nexus_last_used_stmt);
}


ngx_int_t
ngx_nexus_last_used_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    ngx_nexus_last_used_n = 0;
    ngx_nexus_last_used_inflight = 0;

    if (nmcf->pg == NULL) {
        return NGX_OK;
    }

    ngx_nexus_last_used_interval = nmcf->last_used_flush;

    ngx_nexus_last_used_ev.handler = ngx_nexus_last_used_timer;
    ngx_nexus_last_used_ev.log = cycle->log;
    ngx_nexus_last_used_ev.data = &ngx_nexus_last_used_conn;
    ngx_nexus_last_used_ev.cancelable = 1;

    ngx_add_timer(&ngx_nexus_last_used_ev, ngx_nexus_last_used_interval);

    return NGX_OK;
}


void
ngx_nexus_last_used_touch(int64_t key_id)
{
    ngx_uint_t  i;

    /* a handful of keys per worker per interval: a linear scan is cheap */
    for (i = 0; i < ngx_nexus_last_used_n; i++) {
        if (ngx_nexus_last_used_ids[i] == key_id) {
            return;
        }
    }

    if (ngx_nexus_last_used_n == NGX_NEXUS_LAST_USED_MAX) {
        ngx_nexus_last_used_flush();

        if (ngx_nexus_last_used_n == NGX_NEXUS_LAST_USED_MAX) {
            return;
        }
    }

    ngx_nexus_last_used_ids[ngx_nexus_last_used_n++] = key_id;
}


static void
ngx_nexus_last_used_timer(ngx_event_t *ev)
{
    ngx_nexus_last_used_flush();

    if (!ngx_exiting) {
        ngx_add_timer(ev, ngx_nexus_last_used_interval);
    }
}


static void
ngx_nexus_last_used_flush(void)
{
    u_char                *p, *buf;
    size_t                 size;
    ngx_uint_t             i;
    ngx_nexus_pg_query_t  *q;

    if (ngx_nexus_last_used_n == 0 || ngx_nexus_last_used_inflight) {
        return;
    }

    size = 2 + ngx_nexus_last_used_n * (NGX_INT64_LEN + 1);

    q = ngx_nexus_pg_query(ngx_nexus_last_used_stmt, 2 * size);
    if (q == NULL) {
        return;
    }

    /* build "{1,2,3}" at the end of the query's own memory, then copy */
    buf = q->end - size;
    p = buf;
    *p++ = '{';

    for (i = 0; i < ngx_nexus_last_used_n; i++) {
        if (i) {
            *p++ = ',';
        }
        p = ngx_sprintf(p, "%L", ngx_nexus_last_used_ids[i]);
    }

    *p++ = '}';

    if (ngx_nexus_pg_param(q, buf, p - buf) != NGX_OK) {
        ngx_nexus_pg_free(q);
        return;
    }

    q->handler = ngx_nexus_last_used_done;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        return;
    }

    ngx_memcpy(ngx_nexus_last_used_sent, ngx_nexus_last_used_ids,
               ngx_nexus_last_used_n * sizeof(int64_t));
    ngx_nexus_last_used_inflight = ngx_nexus_last_used_n;
    ngx_nexus_last_used_n = 0;
}


static void
ngx_nexus_last_used_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    ngx_uint_t  i, n;

    n = ngx_nexus_last_used_inflight;
    ngx_nexus_last_used_inflight = 0;

    if (rc == NGX_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "nexus: last_used_at update failed, it will be retried%s%s",
                  res ? ": " : "", res ? PQresultErrorMessage(res) : "");

    for (i = 0; i < n; i++) {
        ngx_nexus_last_used_touch(ngx_nexus_last_used_sent[i]);
    }
}
