
/*
 * Copyright (C) Nexus authors
 *
 * Non-blocking PostgreSQL for nginx workers: a per-worker pool of libpq
 * connections driven by nginx events, prepared statements registered at
 * configuration time, and one LISTEN connection per worker.
 */


#ifndef _NGX_NEXUS_PG_H_INCLUDED_
#define _NGX_NEXUS_PG_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <libpq-fe.h>


#define NGX_NEXUS_PG_MAX_PARAMS     8
#define NGX_NEXUS_PG_MAX_STMTS      128

/*
 * The nparams of a COPY ... FROM STDIN statement: sent as a simple query
 * (COPY cannot be prepared), with the query's one parameter as its data,
 * in COPY's text format.  The SQL may hold other statements around the
 * COPY; they run as one implicit transaction.
 */
#define NGX_NEXUS_PG_COPY           -1


/*
 * rc is NGX_OK with a result of status PGRES_TUPLES_OK or PGRES_COMMAND_OK;
 * NGX_ERROR with the failed result (see ngx_nexus_pg_sqlstate()); or
 * NGX_DECLINED with res == NULL when PostgreSQL could not be reached in
 * time.  The query and the result are freed after the handler returns.
 */
typedef void (*ngx_nexus_pg_handler_pt)(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);

typedef void (*ngx_nexus_pg_notify_pt)(ngx_cycle_t *cycle,
    const char *channel, const char *payload);
typedef void (*ngx_nexus_pg_listen_pt)(ngx_cycle_t *cycle, ngx_uint_t on);


struct ngx_nexus_pg_query_s {
    ngx_uint_t                  stmt;
    int                         nparams;
    char                       *values[NGX_NEXUS_PG_MAX_PARAMS];
    int                         lengths[NGX_NEXUS_PG_MAX_PARAMS];
    int                         formats[NGX_NEXUS_PG_MAX_PARAMS];

    ngx_nexus_pg_handler_pt     handler;
    void                       *data;

    /* private */
    ngx_queue_t                 queue;
    ngx_event_t                 timer;
    void                       *conn;
    u_char                     *last;
    u_char                     *end;
    unsigned                    queued:1;
};


/* configuration time */
/* one prepared statement of a table of them */
typedef struct {
    const char                 *name;
    const char                 *sql;
    int                         nparams;
} ngx_nexus_pg_sql_t;

/* registers sql[0..n) as ids[0..n) */
ngx_int_t ngx_nexus_pg_statements(ngx_conf_t *cf,
    const ngx_nexus_pg_sql_t *sql, ngx_uint_t n, ngx_uint_t *ids);

ngx_int_t ngx_nexus_pg_statement(ngx_conf_t *cf, const char *name,
    const char *sql, int nparams, ngx_uint_t *index);
char *ngx_nexus_pg_conf(ngx_conf_t *cf, ngx_nexus_pg_conf_t *pgcf,
    ngx_str_t *value, ngx_uint_t n);
void ngx_nexus_pg_listen_handler(ngx_nexus_pg_notify_pt notify,
    ngx_nexus_pg_listen_pt listen);

/* process */
ngx_int_t ngx_nexus_pg_init_process(ngx_cycle_t *cycle,
    ngx_nexus_pg_conf_t *pgcf);
void ngx_nexus_pg_exit_process(ngx_cycle_t *cycle);

/* queries */
ngx_nexus_pg_query_t *ngx_nexus_pg_query(ngx_uint_t stmt, size_t size);
ngx_int_t ngx_nexus_pg_param(ngx_nexus_pg_query_t *q, u_char *data,
    size_t len);
ngx_int_t ngx_nexus_pg_param_binary(ngx_nexus_pg_query_t *q, u_char *data,
    size_t len);
ngx_int_t ngx_nexus_pg_param_int(ngx_nexus_pg_query_t *q, int64_t n);
ngx_int_t ngx_nexus_pg_param_null(ngx_nexus_pg_query_t *q);

/*
 * A request's query: sends q, whose handler answers r, and makes r wait.
 * Returns NGX_DONE, or the rc of the 503 DEPENDENCY_UNAVAILABLE sent when
 * PostgreSQL cannot take it.  From a content handler (not a body
 * handler), content keeps the request alive until the answer.
 */
ngx_nexus_ctx_t *ngx_nexus_pg_answered(ngx_http_request_t *r);
ngx_int_t ngx_nexus_pg_ask(ngx_http_request_t *r, ngx_nexus_pg_query_t *q,
    ngx_uint_t content);

/* 503 DEPENDENCY_UNAVAILABLE: a request's query could not be run */
ngx_int_t ngx_nexus_pg_unavailable(ngx_http_request_t *r);

/*
 * A handler's answer when its query failed (rc NGX_DECLINED: 503; else
 * 500, the reason logged with what, the query's name), and the answer
 * whose data is the result's first value, JSON text.
 */
ngx_int_t ngx_nexus_pg_failed(ngx_http_request_t *r, PGresult *res,
    ngx_int_t rc, const char *what);
ngx_int_t ngx_nexus_pg_reply(ngx_http_request_t *r, ngx_uint_t status,
    PGresult *res);
ngx_int_t ngx_nexus_pg_send(ngx_nexus_pg_query_t *q);
void ngx_nexus_pg_cancel(ngx_nexus_pg_query_t *q);
void ngx_nexus_pg_free(ngx_nexus_pg_query_t *q);

const char *ngx_nexus_pg_sqlstate(PGresult *res);
ngx_uint_t ngx_nexus_pg_nconnected(void);


#endif /* _NGX_NEXUS_PG_H_INCLUDED_ */
